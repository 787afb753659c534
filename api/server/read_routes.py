"""The routes that reveal state: status, search, one decision's story (all behind the token).

Each reads one run (`api.server.common.resolve_run`); query values are validated by FastAPI
(a bad symbol, time, status, limit or cursor is a 422 naming it) and bound as parameters.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel

from api.server.common import RunQuery, resolve_run
from api.server.context import ApiContext
from api.server.search import MAX_LIMIT, SEARCHES, Filters, search
from api.server.status import LagProbe, run_status
from api.server.story import decision_story
from models.core.messages import SYMBOL_PATTERN, DecisionStatus, OrderStatus, Side

__all__ = ["read_router"]

MS_MAX: Final = 2**62

SymbolQ = Annotated[str | None, Query(pattern=SYMBOL_PATTERN, description="One symbol")]
StartQ = Annotated[
    int | None, Query(ge=0, lt=MS_MAX, description="From this time (epoch ms, inclusive)")
]
EndQ = Annotated[
    int | None, Query(ge=0, lt=MS_MAX, description="Before this time (epoch ms, exclusive)")
]
LimitQ = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page")]
CursorQ = Annotated[
    str | None, Query(min_length=1, max_length=200, description="`next_cursor` of a page")
]
SideQ = Annotated[Side | None, Query(description="buy or sell")]


class Page(BaseModel):
    run_id: str
    items: list[dict[str, Any]]
    next_cursor: str | None


def read_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["read"])
    lag = LagProbe(ctx)

    def page(kind: str, f: Filters) -> Page:
        items, cursor = search_in(kind, f)
        return Page(run_id=f.run_id, items=items, next_cursor=cursor)

    def search_in(kind: str, f: Filters) -> tuple[list[dict[str, Any]], str | None]:
        with ctx.store.session() as store:
            return search(store, SEARCHES[kind], f)

    def run_of(run: str | None) -> str:
        with ctx.store.session() as store:
            return resolve_run(store, ctx, run)

    @router.get("/status")
    def status(run: RunQuery = None) -> dict[str, Any]:
        """Trading state, positions, cash, P&L, open orders, the last decisions, alerts, dead
        letters, GPT spend and the consumer lag of one run."""
        with ctx.store.session() as store:
            run_id = resolve_run(store, ctx, run)
            doc = run_status(store, ctx, run_id)
        doc["consumer_lag"] = lag.read()
        doc["served_from_run"] = ctx.run is not None and ctx.run.run_id == run_id
        doc["mode"] = ctx.run.mode if ctx.run is not None else None
        return doc

    @router.get("/decisions", response_model=Page)
    def decisions(
        run: RunQuery = None,
        symbol: SymbolQ = None,
        start_ms: StartQ = None,
        end_ms: EndQ = None,
        status: Annotated[DecisionStatus | None, Query()] = None,
        limit: LimitQ = 50,
        cursor: CursorQ = None,
    ) -> Page:
        """Decisions of one run, newest first."""
        f = Filters(
            run_of(run),
            symbol,
            start_ms,
            end_ms,
            status.value if status else None,
            None,
            limit,
            cursor,
        )
        return page("decisions", f)

    @router.get("/orders", response_model=Page)
    def orders(
        run: RunQuery = None,
        symbol: SymbolQ = None,
        start_ms: StartQ = None,
        end_ms: EndQ = None,
        status: Annotated[OrderStatus | None, Query()] = None,
        side: SideQ = None,
        limit: LimitQ = 50,
        cursor: CursorQ = None,
    ) -> Page:
        """Orders of one run (their newest status), newest placed first."""
        f = Filters(
            run_of(run),
            symbol,
            start_ms,
            end_ms,
            status.value if status else None,
            side.value if side else None,
            limit,
            cursor,
        )
        return page("orders", f)

    @router.get("/fills", response_model=Page)
    def fills(
        run: RunQuery = None,
        symbol: SymbolQ = None,
        start_ms: StartQ = None,
        end_ms: EndQ = None,
        side: SideQ = None,
        limit: LimitQ = 50,
        cursor: CursorQ = None,
    ) -> Page:
        """Fills of one run, newest first."""
        f = Filters(
            run_of(run),
            symbol,
            start_ms,
            end_ms,
            None,
            side.value if side else None,
            limit,
            cursor,
        )
        return page("fills", f)

    @router.get("/decisions/{decision_id:path}", responses={404: {"description": "No such id"}})
    def story(
        decision_id: Annotated[str, Path(min_length=1, max_length=200)],
        run: RunQuery = None,
    ) -> dict[str, Any]:
        """One decision's whole story: trigger, features, GPT calls, every review round,
        orders, fills and the trading state in force."""
        with ctx.store.session() as store:
            run_id = resolve_run(store, ctx, run)
            found = decision_story(store, run_id, decision_id)
        if found is None:
            raise HTTPException(status_code=404, detail="no such decision in this run")
        return found

    return router
