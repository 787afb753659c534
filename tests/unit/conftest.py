"""The pure lane (`make test-fast`): decision logic, parsing, config, in-process CLI errors.

Pure by construction: every test here runs under `tests.support.purity`, which fails it if it
opens a network connection, binds a socket, starts a process or opens the chdb engine; and the
fixtures that stand up a broker or a server are refused by name, so a test that needs one says
so by living in tests/integration or tests/e2e instead.

The fast lane (`-m "not slow"`) also runs every property test on at most
`FAST_LANE_EXAMPLES` generated examples: there it is a quick check that the property holds on
a few inputs; the full suite (`make test`, CI) runs each test on the examples it asks for.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import settings

from tests.support.purity import HINT, _pure_unit_test  # noqa: F401 - autouse for this lane


def _refuse(name: str) -> Callable[[], None]:
    @pytest.fixture(name=name)
    def refuse() -> None:
        pytest.fail(f"the {name} fixture is not available here; {HINT}", pytrace=False)

    return refuse


kafka_bootstrap = _refuse("kafka_bootstrap")
fresh_topics = _refuse("fresh_topics")
openai_server = _refuse("openai_server")
exchange_emulator = _refuse("exchange_emulator")
webhook = _refuse("webhook")


FAST_LANE_EXAMPLES = 8


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the fast lane, cap each property test's examples (see the module's docstring)."""
    if "not slow" not in (config.option.markexpr or ""):
        return
    for item in items:
        test = getattr(item, "obj", None)
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if current is not None and current.max_examples > FAST_LANE_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(  # type: ignore[union-attr]
                current, max_examples=FAST_LANE_EXAMPLES
            )
