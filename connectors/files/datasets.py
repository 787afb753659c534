"""Sample market data that ships with the install, so a demo or test needs no download.

The `backtesting` package carries three small OHLCV files; we refer to them by name rather than
by site-packages path, which differs per machine and venv.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = [
    "BTCUSD",
    "EURUSD",
    "GOOG",
    "DatasetInfo",
    "dataset_info",
    "dataset_path",
    "list_datasets",
    "resolve_source",
]

GOOG = "GOOG"
EURUSD = "EURUSD"
BTCUSD = "BTCUSD"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    cadence: str
    description: str


_DATASETS: dict[str, DatasetInfo] = {
    GOOG: DatasetInfo(GOOG, "daily", "Alphabet (GOOG) daily bars, 2004-08-19 .. 2013-03-01"),
    EURUSD: DatasetInfo(EURUSD, "hourly", "EUR/USD hourly bars, 2017-04-19 .. 2018-02-07"),
    # Calendar months fit no fixed window: each is counted in the 31d window it ends in.
    BTCUSD: DatasetInfo(BTCUSD, "monthly", "Bitcoin in USD, monthly bars, 2012-01 .. 2024-12"),
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
    """The CSV file of a shipped dataset (name is case-insensitive)."""
    info = dataset_info(name)
    path = Path(str(resources.files("backtesting").joinpath("test", f"{info.name}.csv")))
    if not path.is_file():
        raise FileNotFoundError(f"dataset {info.name} is missing from the backtesting package")
    return path


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
