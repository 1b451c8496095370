"""The self-hosted collector of the jsPsych page: ``dubfiv_study_serve STUDY_DIR``.

It serves the export's ``public/`` folder (nothing else) and stores each participant's
trial records page by page in a database (SQLite by default, PostgreSQL for larger
studies), assigns conditions balanced over the running and finished sessions, refuses
Prolific ids that already took part, and sends finishers to Prolific's completion URL.
See ``docs/study_collector.md``.

Modules: :mod:`.settings` (limits), :mod:`.schema` (the tables), :mod:`.store` (the
database: :func:`open_store`), :mod:`.assign` (balanced assignment), :mod:`.public`
(safe paths below ``public/``), :mod:`.app` (the Starlette app), :mod:`.export` (the
responses CSV), :mod:`.loadtest` (simulated participants for tests and the benchmark).
"""

from __future__ import annotations

from dubfiv.study.collector.errors import CollectorError, StoreError, StudyFolderError
from dubfiv.study.collector.settings import CollectorSettings
from dubfiv.study.collector.store import Store, open_store

__all__ = ["CollectorError", "CollectorSettings", "Store", "StoreError", "StudyFolderError",
           "open_store"]
