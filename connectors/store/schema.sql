-- stratflow: the ClickHouse schema. One file for both backends: the embedded chdb engine and a
-- ClickHouse server (package data of `connectors.store`, so an installed wheel carries it;
-- deploy/docker-compose.yml mounts this very file into the server's init directory).
-- `connectors.store.clickhouse.Store.apply_schema()` runs it statement by
-- statement and replaces the database name `stratflow` after "IF NOT EXISTS" with the configured
-- one (`clickhouse.database`); run by hand it is valid as it stands:
--     clickhouse-client --multiquery < connectors/store/schema.sql
--
-- Conventions, and why:
-- * Every table is a ReplacingMergeTree ordered by the row's natural id, so writing the same row
--   again after a crash or a Kafka replay is harmless: read with FINAL (or argMax) and each id
--   counts once. Where a row legitimately changes (decisions, orders, strategies) a version
--   column decides which copy wins; elsewhere the last inserted copy wins.
-- * No PARTITION BY: ReplacingMergeTree only collapses duplicates inside one partition, and a
--   partition key derived from a column that changes between versions would keep both copies.
-- * Money, prices and quantities are Decimal(38, 12): exact, 26 integer digits, 12 decimals. The
--   store rounds to 12 decimals (half-even) before writing; no binary float ever holds an amount.
-- * Time is Int64 epoch milliseconds, exactly as in the pipeline. `ts` is an ALIAS DateTime64(3,
--   'UTC') of it for Grafana's time filters: computed on read, so it costs no storage and a filter
--   on it can still use the primary key where the ms column is part of it.
-- * Nested parts of a decision are JSON text (String), next to the flat columns that queries
--   filter and group on.
-- * `run_id` is the run that wrote the row (`stratflow run` prints it at start; a resumed run keeps
--   its id). It ends every sorting key, so two runs reaching the same decision keep a row each,
--   while a run replayed after a crash still lands on its own rows. A report reads one run:
--   `WHERE run_id = '...'`. Stores from before run ids get the column on their next start.
-- * The loader splits statements on semicolons outside quotes and drops `--` comments.

CREATE DATABASE IF NOT EXISTS stratflow;

-- Validated ticks (only when storage.ticks is on). tick_id: producer id, else topic:partition:offset.
CREATE TABLE IF NOT EXISTS stratflow.ticks
(
    symbol   LowCardinality(String),
    ts_ms    Int64,
    price    Decimal(38, 12),
    size     Decimal(38, 12),
    tick_id  String,
    run_id String,
    ts       DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(ts_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (symbol, ts_ms, tick_id, run_id);

-- One closed event-time window of one symbol.
CREATE TABLE IF NOT EXISTS stratflow.bars
(
    symbol   LowCardinality(String),
    start_ms Int64,
    end_ms   Int64,
    open     Decimal(38, 12),
    high     Decimal(38, 12),
    low      Decimal(38, 12),
    close    Decimal(38, 12),
    volume   Decimal(38, 12),
    trades   Int64,
    vwap     Decimal(38, 12),
    run_id String,
    ts       DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(start_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (symbol, start_ms, run_id);

-- One fired trigger. `detail` is the trigger's detail mapping as JSON text.
CREATE TABLE IF NOT EXISTS stratflow.signals
(
    symbol    LowCardinality(String),
    ts_ms     Int64,
    trigger   LowCardinality(String),
    kind      LowCardinality(String),
    direction LowCardinality(String),
    strength  Float64,
    strategic Bool,
    detail    String,
    run_id String,
    ts        DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(ts_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (symbol, ts_ms, trigger, run_id);

-- The decision log: one row per decision and version. A decision is written when it is made and
-- again, with a higher `version`, when its fills arrive: FINAL keeps the newest.
CREATE TABLE IF NOT EXISTS stratflow.decisions
(
    decision_id      String,
    ts_ms            Int64,
    symbol           LowCardinality(String),
    branch           LowCardinality(String),
    status           LowCardinality(String),
    trigger_names    Array(String),
    n_rounds         UInt32,
    n_orders         UInt32,
    n_fills          UInt32,
    note             String,
    version          UInt64,
    triggers         String,
    features         String,
    rounds           String,
    orders           String,
    fills            String,
    portfolio_before String,
    run_id String,
    ts               DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(ts_ms, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (decision_id, run_id);

-- Orders as placed; a status change is a new row with a higher `version`, which wins.
CREATE TABLE IF NOT EXISTS stratflow.orders
(
    client_order_id String,
    decision_id     String,
    symbol          LowCardinality(String),
    side            LowCardinality(String),
    quantity        Decimal(38, 12),
    order_type      LowCardinality(String),
    status          LowCardinality(String),
    placed_ms       Int64,
    updated_ms      Int64,
    reason          String,
    version         UInt64,
    -- A buy sized at its fill: the share of equity it buys to (NULL: sized explicitly). Its
    -- `quantity` is the estimate at the decision until the fill, then what was bought.
    size_fraction   Nullable(Decimal(38, 12)),
    run_id String,
    ts              DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(placed_ms, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (client_order_id, run_id);

CREATE TABLE IF NOT EXISTS stratflow.fills
(
    fill_id         String,
    client_order_id String,
    decision_id     String,
    symbol          LowCardinality(String),
    side            LowCardinality(String),
    quantity        Decimal(38, 12),
    price           Decimal(38, 12),
    fee             Decimal(38, 12),
    ts_ms           Int64,
    run_id String,
    ts              DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(ts_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (fill_id, run_id);

-- Portfolio snapshots: one row per symbol and time.
CREATE TABLE IF NOT EXISTS stratflow.positions
(
    ts_ms          Int64,
    symbol         LowCardinality(String),
    quantity       Decimal(38, 12),
    avg_cost       Decimal(38, 12),
    mark_price     Decimal(38, 12),
    realized_pnl   Decimal(38, 12),
    unrealized_pnl Decimal(38, 12),
    cash           Decimal(38, 12),
    equity         Decimal(38, 12),
    run_id String,
    ts             DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(ts_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (symbol, ts_ms, run_id);

-- `context` is the alert's context mapping as JSON text.
CREATE TABLE IF NOT EXISTS stratflow.alerts
(
    alert_id String,
    ts_ms    Int64,
    severity LowCardinality(String),
    source   LowCardinality(String),
    message  String,
    context  String,
    run_id String,
    ts       DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(ts_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (alert_id, run_id);

-- Messages the flow could not use, with the reason and the raw payload.
CREATE TABLE IF NOT EXISTS stratflow.dead_letters
(
    dead_letter_id String,
    topic          LowCardinality(String),
    `partition`    Int32,
    `offset`       Int64,
    record_ms      Int64,
    reason         String,
    payload        String,
    run_id String,
    ts             DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(record_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (dead_letter_id, run_id);

-- News headlines and social posts in one table, told apart by `kind` ('news' or 'social').
-- `text` is a headline's body or a post's text, `source` a news source or a post's author,
-- `headline` is empty for posts. Keyed by (kind, id) because the two feeds number
-- independently and a news id must not replace a post that happens to share it.
CREATE TABLE IF NOT EXISTS stratflow.news
(
    kind     LowCardinality(String),
    id       String,
    ts_ms    Int64,
    symbols  Array(String),
    headline String,
    text     String,
    source   String,
    run_id String,
    ts       DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(ts_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (kind, id, run_id);

-- One row per GPT call, or per decision not to call (cache, recording, budget, open circuit).
-- `call_id` is derived from the decision id and the adjust round, so a replay rewrites the
-- same row. `cost` is USD from the price table (0 without a billed call); `outcome` is `ok` or
-- why not (see models.messages.GptOutcome); `answer` is the raw answer text, clipped.
CREATE TABLE IF NOT EXISTS stratflow.gpt_calls
(
    call_id           String,
    ts_ms             Int64,
    decision_id       String,
    round             UInt32,
    symbol            LowCardinality(String),
    model             LowCardinality(String),
    prompt_hash       String,
    prompt_tokens     UInt64,
    completion_tokens UInt64,
    latency_ms        UInt64,
    cost              Decimal(38, 12),
    price_known       Bool,
    outcome           LowCardinality(String),
    answer            String,
    detail            String,
    run_id String,
    ts                DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(ts_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (call_id, run_id);

-- One activation of a GPT-written strategy (see models.messages.StrategyRecord), written when it
-- starts and again, with a higher `version`, when it ends: FINAL keeps the newest. Keyed by
-- `activation_id` (the decision that started it), so the same spec activated twice is two rows.
-- `ended_ms` is NULL while it is active; `spec` is the strategy's JSON text.
CREATE TABLE IF NOT EXISTS stratflow.strategies
(
    activation_id  String,
    strategy_id    String,
    version        UInt64,
    decision_id    String,
    symbol         LowCardinality(String),
    universe       Array(String),
    status         LowCardinality(String),
    started_ms     Int64,
    ended_ms       Nullable(Int64),
    bars_active    UInt64,
    trades         UInt64,
    realized_pnl   Decimal(38, 12),
    confidence     Float64,
    rationale      String,
    spec           String,
    run_id String,
    ts             DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(started_ms, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (activation_id, run_id);

-- The control plane's acknowledgements (models.control): one row per control command the desk
-- applied or refused, at `applied_ms` (its place in the stream: the command's Kafka record
-- time); `state_before` / `state_after` the trading states around it, `reason` why it was
-- refused (empty when applied). Keyed by `command_id`: each id is applied once.
CREATE TABLE IF NOT EXISTS stratflow.control_log
(
    command_id     String,
    action         LowCardinality(String),
    issued_by      String,
    issued_ms      Int64,
    applied_ms     Int64,
    outcome        LowCardinality(String),
    state_before   LowCardinality(String),
    state_after    LowCardinality(String),
    reason         String,
    run_id String,
    ts             DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(applied_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (command_id, run_id);

-- Settings changes made through the control API (api.server.settings_routes): one row per
-- change, `change_id` also the id of the control command that carried it (its
-- acknowledgement is the control_log row of that id), `who` and `changed_ms` (wall clock),
-- `diff` JSON text `[{"key", "before", "after"}]` (a secret's value is never written here),
-- `run_id` the run it was sent to (empty: no run named). A ledger like `promotions`:
-- `run --fresh` never deletes a change.
CREATE TABLE IF NOT EXISTS stratflow.settings_changes
(
    change_id  String,
    changed_ms Int64,
    who        String,
    diff       String,
    run_id     String,
    ts         DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(changed_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (change_id, run_id);

-- The trials ledger (connectors.store.trials): every configuration ever tried for a strategy
-- family, so the deflated Sharpe ratio of a sweep's winner counts all of them, not only this
-- sweep's. `family` is the grid's strategy name without parameters, `source` `sweep` or
-- `walk_forward` (an in-sample evaluation of one window), `trial_id` `<run_id>:<point>` (a
-- walk-forward's `<run_id>:w<window>:<point>`), `params` and `statistics` JSON text, `sharpe`
-- the per-period Sharpe ratio of `returns` (NULL where undefined), `returns` the per-period
-- (`period`: day, week, ...) returns, ZSTD-compressed. `run_id` is the sweep's id. Not deleted
-- with a run: `run --fresh` never forgets a trial.
CREATE TABLE IF NOT EXISTS stratflow.trials
(
    trial_id      String,
    family        LowCardinality(String),
    source        LowCardinality(String),
    tried_ms      Int64,
    symbol        LowCardinality(String),
    strategy      String,
    params        String,
    data_start_ms Int64,
    data_end_ms   Int64,
    period        LowCardinality(String),
    sharpe        Nullable(Float64),
    statistics    String,
    returns       Array(Float64) CODEC(ZSTD(3)),
    run_id        String,
    ts            DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(tried_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (family, trial_id, run_id);
-- The road from backtest to live (models.validation.promotion): one row per recorded step of a
-- strategy setup. `setup_hash` names the setup (its strategies, controller and the settings
-- they read), `step` is backtest, paper, approval or demotion, `outcome` pass or fail,
-- `run_id` the run the step was measured on (empty for an approval), `who` the person who
-- approved, `figures` the numbers it was judged on (JSON text), `setup` the setup's canonical
-- JSON. Not scoped to a run like the tables above: `run --fresh` never deletes a promotion.
CREATE TABLE IF NOT EXISTS stratflow.promotions
(
    setup_hash  String,
    step        LowCardinality(String),
    recorded_ms Int64,
    outcome     LowCardinality(String),
    who         String,
    figures     String,
    note        String,
    setup       String,
    run_id      String,
    ts          DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(recorded_ms, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (setup_hash, step, recorded_ms, run_id);
