"""``dubfiv_study_serve``: host an exported study's jsPsych page and collect its records."""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path

from dubfiv.cli._oneline import OneLineParser, fail, flags_of
from dubfiv.errors import DubfivError, ParameterError
from dubfiv.study.collector.errors import CollectorError, StoreError
from dubfiv.study.content import Study
from two4two.files import describe_os_error

PROG = "dubfiv_study_serve"
DEFAULT_DATABASE = Path("records") / "collector.sqlite"
"""The default SQLite file, relative to the study folder (outside ``public/``)."""
PROLIFIC_QUERY = ("?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}"
                  "&SESSION_ID={{%SESSION_ID%}}")


class ListenError(CollectorError, OSError):
    """The server cannot listen on the host and port asked for."""


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description=(
            "Serve STUDY_DIR/public (the jsPsych page written by dubfiv_export_user_study "
            "--runtime jspsych) and store every participant's answers page by page in a "
            "database; conditions are assigned balanced, Prolific ids that already took "
            "part are refused, finishers of a Prolific study are sent to its completion "
            "URL. Put it behind an HTTPS reverse proxy for real participants (see "
            "docs/study_collector.md). With --export, write the responses CSV instead."),
    )
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR",
                        help="the study folder written by dubfiv_export_user_study (holds "
                             "study.json and public/)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, for a reverse proxy "
                             "on the same machine; 0.0.0.0 listens on every interface)")
    parser.add_argument("--port", type=int, default=8000,
                        help="TCP port (default: 8000; 0 picks a free one and prints it)")
    parser.add_argument("--database", default=None, metavar="URL",
                        help="SQLAlchemy URL of the database (default: the SQLite file "
                             f"STUDY_DIR/{DEFAULT_DATABASE.as_posix()}); PostgreSQL: "
                             "postgresql://USER:PASSWORD@HOST:PORT/DB")
    parser.add_argument("--export", type=Path, default=None, metavar="FILE",
                        help="write the stored responses to FILE as CSV (one row per "
                             "participant, read by dubfiv_study_results) and exit")
    return parser


def default_database(study_dir: Path) -> str:
    """SQLite URL of ``study_dir/records/collector.sqlite`` (creates ``records/``)."""
    path = (study_dir / DEFAULT_DATABASE).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (not yet listening).

    Raises:
        ListenError: the port is in use, or the address is not one of this machine's.
    """
    if not 0 <= port <= 65535:
        raise ParameterError(f"port {port} must be between 0 and 65535", "port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise ListenError(f"cannot listen on `host` {host!r}: {error.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ListenError(f"`port` {port} on {host} is in use: stop what runs there or "
                              "choose another port") from None
        raise ListenError(f"cannot listen on {host}:{port} (`host`, `port`): "
                          f"{error.strerror}") from None
    return sock


def export(study: Study, url: str, output: Path) -> int:
    from dubfiv.study.collector.export import write_responses
    from dubfiv.study.collector.store import database_url, open_store

    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise StoreError(f"no database {parsed.database} (`database`): the collector has not "
                         "stored anything for this study yet; give the URL it ran with")
    store = open_store(url)
    try:
        summary = write_responses(study, store, output)
    finally:
        store.close()
    for participant, reason in summary.skipped:
        print(f"{PROG}: skipped participant {participant}: {reason}", file=sys.stderr)
    print(f"wrote {summary.rows} response row(s) to {output} ({len(summary.skipped)} "
          f"unreadable left out, {summary.refusals} refused start(s))")
    return 0


def serve(study_dir: Path, url: str, host: str, port: int) -> int:
    import uvicorn

    from dubfiv.study.collector.app import check_public, create_app
    from dubfiv.study.collector.store import open_store

    check_public(study_dir)
    sock = listen_socket(host, port)
    try:
        store = open_store(url)
    except DubfivError:
        sock.close()
        raise
    try:
        app = create_app(study_dir, store)
        bound = sock.getsockname()[1]
        shown_host = f"[{host}]" if ":" in host else host
        print(f"{PROG}: serving {study_dir / 'public'} at http://{shown_host}:{bound}/ "
              f"(database {store.url}); Prolific study URL: https://YOUR-HOST/"
              f"{PROLIFIC_QUERY}", flush=True)
        config = uvicorn.Config(app, log_level="info", access_log=False, server_header=False,
                                proxy_headers=True)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        pass
    finally:
        sock.close()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = flags_of(parser)
    try:
        study = Study.load(args.study_dir)
        url = args.database or default_database(args.study_dir)
        if args.export is not None:
            return export(study, url, args.export)
        return serve(args.study_dir, url, args.host, args.port)
    except DubfivError as error:
        return fail(PROG, error, flags=flags)
    except OSError as error:
        return fail(PROG, describe_os_error(error))


if __name__ == "__main__":
    sys.exit(main())
