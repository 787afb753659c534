"""The control plane's further actions (issue 13's API): settings changes and the run mode
are kept at their place in the stream, applied once per id, survive a snapshot (also one taken
before they existed), and a malformed action is a reason, never a crash."""

from __future__ import annotations

import json
import pickle

from hypothesis import given
from hypothesis import strategies as st

from models.control.commands import (
    ChangeSettings,
    ControlCommand,
    RunMode,
    SetMode,
    SetTradingState,
    action_label,
    parse_command,
)
from models.control.plane import ControlPlane
from models.control.states import TradingState


def _cmd(cid: str, action: ChangeSettings | SetMode | SetTradingState) -> ControlCommand:
    return ControlCommand(command_id=cid, action=action, issued_by="ops", issued_ms=1)


def test_a_settings_change_is_kept_newest_value_first_and_leaves_the_state() -> None:
    plane = ControlPlane(TradingState.PAUSED)
    a = plane.apply(_cmd("s1", ChangeSettings(values={"risk.max_order_notional": "30000"})), 10)
    b = plane.apply(
        _cmd("s2", ChangeSettings(values={"risk.max_order_notional": "20000", "gpt.model": "m"})),
        11,
    )
    assert a is not None and b is not None
    assert a.outcome == b.outcome == "applied"
    assert (b.state_before, b.state_after) == (TradingState.PAUSED, TradingState.PAUSED)
    assert b.action == "change_settings:risk.max_order_notional,gpt.model"
    assert plane.settings == {"risk.max_order_notional": "20000", "gpt.model": "m"}
    assert plane.apply(_cmd("s1", ChangeSettings(values={"gpt.model": "x"})), 12) is None
    assert plane.settings["gpt.model"] == "m"


def test_the_mode_asked_for_is_kept() -> None:
    plane = ControlPlane()
    ack = plane.apply(_cmd("m1", SetMode(mode=RunMode.LIVE, setup="abc")), 5)
    assert ack is not None and ack.action == "set_mode:live" and plane.mode is RunMode.LIVE


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["risk.min_cash", "gpt.model", "strategy.target_fraction"]),
            st.integers(0, 9),
        ),
        max_size=20,
    )
)
def test_the_plane_after_a_snapshot_applies_what_the_original_would(
    steps: list[tuple[str, str, int]],
) -> None:
    """A restart restores the plane from its snapshot at any point; the commands replayed
    after it (again from the start of the topic) leave it as an uninterrupted plane."""
    commands = [_cmd(f"{cid}{n}", ChangeSettings(values={key: n})) for cid, key, n in steps]
    whole = ControlPlane()
    for c in commands:
        whole.apply(c, 1)
    for cut in range(len(commands) + 1):
        plane = ControlPlane()
        for c in commands[:cut]:
            plane.apply(c, 1)
        plane = pickle.loads(pickle.dumps(plane))
        again = [plane.apply(c, 1) for c in commands]
        assert all(a is None for a in again[:cut])
        assert plane.settings == whole.settings and plane.applied == whole.applied


def test_a_snapshot_from_before_settings_and_mode_restores_with_their_defaults() -> None:
    plane = ControlPlane.__new__(ControlPlane)
    plane.__setstate__([TradingState.REDUCING, {"x"}])  # what the older plane pickled
    assert plane.state is TradingState.REDUCING and plane.applied == {"x"}
    assert plane.settings == {} and plane.mode is None


def _raw(action: object) -> bytes:
    body = {"command_id": "c1", "action": action, "issued_by": "ops", "issued_ms": 1}
    return json.dumps(body).encode()


def test_malformed_settings_and_mode_actions_are_reasons() -> None:
    for action in (
        {"kind": "change_settings", "values": {}},
        {"kind": "change_settings", "values": {"Risk": 1}},
        {"kind": "change_settings", "values": {"risk": 1}},
        {"kind": "change_settings", "values": {"risk.x": 1}, "extra": 1},
        {"kind": "set_mode", "mode": "yolo"},
    ):
        reason = parse_command(_raw(action))
        assert isinstance(reason, str) and reason.startswith("invalid control command"), action
    ok = parse_command(_raw({"kind": "change_settings", "values": {"risk.min_cash": "5"}}))
    assert isinstance(ok, ControlCommand) and isinstance(ok.action, ChangeSettings)


def test_a_long_action_label_is_cut_to_the_log_column() -> None:
    keys = {f"symbols.SYM{i}.lot_size": 1 for i in range(10)}
    label = action_label(ChangeSettings(values=keys))
    assert len(label) == 64 and label.endswith("...")
