"""Distribution ``dubfiv``: the ``dubfiv`` research library and the ``two4two`` generator."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "dubfiv" / "__init__.py").read_text(encoding="utf-8")
).group(1)

CONSOLE_SCRIPTS = [
    "two4two_render_dataset = two4two.cli_tool:main",
    "dubfiv_train = dubfiv.cli.train:main",
    "dubfiv_model_summary = dubfiv.cli.model_summary:main",
    "dubfiv_print_shapes = dubfiv.cli.print_shapes:main",
    "dubfiv_ground_truth = dubfiv.cli.ground_truth:main",
    "dubfiv_supervised = dubfiv.cli.supervised:main",
    "dubfiv_supervised_analysis = dubfiv.cli.supervised_analysis:main",
    "dubfiv_export_user_study = dubfiv.cli.export_user_study:main",
    "dubfiv_study_results = dubfiv.cli.study_results:main",
    "dubfiv_study_serve = dubfiv.cli.study_serve:main",
    "dubfiv_quickstart = dubfiv.cli.quickstart:main",
    "dubfiv_dataset_configs = dubfiv.cli.dataset_configs:main",
    "dubfiv_two4two_merge = dubfiv.cli.two4two_merge:main",
    "dubfiv_collect_runs = dubfiv.cli.collect_runs:main",
    "dubfiv_generate_figures = dubfiv.cli.generate_figures:main",
]

setup(
    name="dubfiv",
    version=VERSION,
    description=(
        "Do Users Benefit From Interpretable Vision? Invertible networks with an "
        "interpretable linear head, explanations, user-study export, and the "
        "Two4Two synthetic dataset generator."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["dubfiv", "dubfiv.*", "two4two", "two4two.*"]),
    include_package_data=True,
    package_data={"dubfiv.study.jspsych": ["assets/*"]},
    install_requires=[
        "torch>=2.2",
        "torchvision>=0.17",
        "numpy>=1.26,<2.0",
        "scipy>=1.10",
        "toml>=0.10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "pillow>=9.0",
        "pandas>=2.0",
        "scikit-learn>=1.3",
        "statsmodels>=0.14",
        "submitit>=1.5",
        "starlette>=0.37",
        "uvicorn>=0.29",
        "sqlalchemy>=2.0",
        "bpy==4.5.*",
    ],
    extras_require={
        "dev": [
            "pytest>=7.4",
            "pytest-timeout>=2.1",
            "ruff>=0.4",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6.0",
            "playwright>=1.40",
            "httpx>=0.27",
            "psycopg[binary]>=3.1",
        ],
        "postgres": ["psycopg[binary]>=3.1"],
        "logging": ["tensorboard"],
    },
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
