"""Sample market data that ships with the install, so a demo or test needs no download.

The `backtesting` package carries three small OHLCV files; we refer to them by name rather than
by site-packages path, which differs per machine and venv. That package is AGPL-3.0, so it is an
optional extra (`stratflow[datasets]`, which `make` installs) and never needed to import
stratflow: only asking for a dataset's file needs it, and without it that says how to get it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "BTCUSD",
    "DATASETS_EXTRA",
    "DATASETS_PACKAGE",
    "EURUSD",
    "GOOG",
    "DatasetInfo",
    "DatasetUnavailable",
    "dataset_info",
    "dataset_path",
    "list_datasets",
    "resolve_source",
]

GOOG = "GOOG"
EURUSD = "EURUSD"
BTCUSD = "BTCUSD"

DATASETS_PACKAGE: Final = "backtesting"
DATASETS_EXTRA: Final = "datasets"
"""The optional extra of stratflow that installs `DATASETS_PACKAGE` (pyproject.toml)."""


class DatasetUnavailable(FileNotFoundError):
    """A shipped dataset whose file is not installed: the optional extra is missing, or the
    installed `backtesting` lacks the file. A `FileNotFoundError`, so the CLI prints it as one
    `error:` line."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    cadence: str
    description: str
    interval: str
    """The bar interval of its rows (`models.config.base.parse_bar_interval`): what the
    demo and `stratflow replay NAME` load it with, and what the file loader infers from it."""


_DATASETS: dict[str, DatasetInfo] = {
    GOOG: DatasetInfo(GOOG, "daily", "Alphabet (GOOG) daily bars, 2004-08-19 .. 2013-03-01", "1d"),
    EURUSD: DatasetInfo(EURUSD, "hourly", "EUR/USD hourly bars, 2017-04-19 .. 2018-02-07", "1h"),
    # Stamped on the last day of each month (2012-01-31 is January): calendar months, each the
    # month holding its stamp, complete at the next month's start.
    BTCUSD: DatasetInfo(
        BTCUSD, "monthly", "Bitcoin in USD, monthly bars, 2012-01 .. 2024-12", "1mo"
    ),
}


def list_datasets() -> list[str]:
    """Names accepted by `dataset_path`, sorted."""
    return sorted(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    key = name.strip().upper()
    if key not in _DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}")
    return _DATASETS[key]


def dataset_path(name: str) -> Path:
    """The CSV file of a shipped dataset (name is case-insensitive).

    Found through the package's import spec, without importing it: `backtesting` imports bokeh
    and more, none of which a file path needs.
    """
    info = dataset_info(name)
    spec = importlib.util.find_spec(DATASETS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable(
            f"dataset {info.name} ships in the optional `{DATASETS_PACKAGE}` package"
            f" (AGPL-3.0), which is not installed; install the extra:"
            f" pip install 'stratflow[{DATASETS_EXTRA}]' (make install does)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "test" / f"{info.name}.csv"
        if path.is_file():
            return path
    raise DatasetUnavailable(
        f"dataset {info.name} is missing from the installed {DATASETS_PACKAGE} package"
    )


def resolve_source(name_or_path: str | Path) -> tuple[Path, str]:
    """(file, default symbol) for a dataset name or a file path.

    A CLI argument can then be either `GOOG` or `./my_bars.csv`; a path that exists wins over a
    dataset of the same name so a local file is never shadowed.
    """
    path = Path(name_or_path)
    if path.exists() or isinstance(name_or_path, Path):
        return path, path.stem.upper()
    key = str(name_or_path).strip().upper()
    if key in _DATASETS:
        return dataset_path(key), key
    return path, path.stem.upper()
