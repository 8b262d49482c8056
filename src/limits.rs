//! Every limit and queue size in one place, each with the reason for its value.

/// Bytes of CDR file read and handed to a rating worker at a time. Large enough that per-block
/// overhead (channel hand-off, Arrow array set-up) vanishes, small enough that a few blocks in
/// flight stay far below the memory budget.
pub const BLOCK_BYTES: usize = 4 << 20;

/// A single CDR record longer than this is not a CDR: the file is refused rather than buffered
/// without bound.
pub const RECORD_BYTES_MAX: usize = 16 << 20;

/// Blocks waiting between the file reader and the raters. The reader blocks when the queue is
/// full (backpressure: nothing is dropped, memory stays bounded).
pub const BLOCKS_QUEUED_MAX: usize = 4;

/// Blocks rated in parallel as one group before their results are put in order. About two per
/// core keeps both cores busy while one block finishes late.
pub const BLOCKS_PER_GROUP: usize = 4;

/// Rate lookups prefetch this many calls ahead: a call's pricing record one stride ahead, its
/// index slots two strides ahead. Far enough that memory answers before the lookup, near enough
/// that the lines are still in cache then.
pub const LOOKUPS_PREFETCHED_AHEAD: usize = 8;

/// Rated batches waiting for the output writer; the raters block when it is full.
pub const RATED_BATCHES_QUEUED_MAX: usize = 4;

/// Rows per Parquet row group: readers (DuckDB, Spark) parallelise over row groups, and the
/// writer buffers one row group's arrays, so this also bounds the writer's memory. DuckDB writes
/// 122,880; at 512k the buffered arrays alone were about 200 MB of the 0.8 GB peak.
pub const PARQUET_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows per data page of the rated file's dictionary-coded columns (the Arrow writer's own
/// columns keep its default of 20,000): a reader decompresses a page at a time.
pub const PARQUET_DATA_PAGE_ROWS: usize = 32 * 1024;

/// A rejected record is copied into the rejects file up to this many bytes, so one giant broken
/// row cannot bloat it.
pub const REJECT_RAW_BYTES_MAX: usize = 4096;

/// Rows per record batch when reading Parquet CDR files.
pub const PARQUET_READ_BATCH_ROWS: usize = 64 * 1024;

/// How often the progress line on stderr is redrawn.
pub const PROGRESS_INTERVAL_MILLISECONDS: u64 = 500;

/// Most dedupe entries reserved up front (16 bytes each, plus a control byte and the free slots
/// of a power-of-two table): a 20M-CDR night without rehashing, 33.5M slots or 0.57 GB reserved;
/// the table grows past it when needed.
pub const DEDUPE_RESERVE_MAX: u64 = 20_000_000;

/// Longest call accepted, in seconds (7 days). No call lasts a week; a larger billsec is a corrupt
/// record, and the cap keeps every cost within exact integer range.
pub const BILLSEC_MAX: u32 = 7 * 86_400;

/// Highest price (per minute, connect fee or maximum cost) a deck may contain. Far above any real
/// tariff; with [`BILLSEC_MAX`] it bounds a call's cost well inside i64 at 8 decimals.
pub const PRICE_MAX: u32 = 10_000;

/// Most CDRs posted in one store transaction by the daemon: large enough that per-transaction
/// costs (fsync, progress row) vanish, small enough that a commit takes well under a second.
pub const BATCH_CDRS_MAX: usize = 50_000;

/// Longest a rated CDR waits for its batch to fill before the batch is posted anyway.
pub const BATCH_WAIT_MILLISECONDS: u64 = 200;

/// Work items (rated blocks of spool files, HTTP batches) waiting for the poster. Senders block
/// (spool) or are answered 503 (HTTP) when it is full.
pub const POSTER_QUEUE_MAX: usize = 8;

/// Largest `POST /v1/cdrs` body; a larger one is answered 413.
pub const REQUEST_BYTES_MAX: usize = 32 << 20;

/// Attempts at posting one batch before the daemon gives up on it for now (the spool file stays
/// in the spool and is resumed from its recorded progress; an HTTP request gets 503).
pub const STORE_ATTEMPTS_MAX: u32 = 5;

/// Wait before the first retry of a failed post; doubled for each further attempt.
pub const STORE_RETRY_BACKOFF_MILLISECONDS: u64 = 200;

/// How often the spool folder is scanned for new files.
pub const SPOOL_POLL_MILLISECONDS: u64 = 250;

/// How long the spool pauses after giving up on a file because the store failed.
pub const SPOOL_PAUSE_AFTER_STORE_FAILURE_MILLISECONDS: u64 = 2_000;

/// Page cache of each embedded-store connection, in KiB: enough to keep the rated-calls index of
/// a few million calls in memory while batches insert into it.
pub const SQLITE_CACHE_KIBIBYTES: i64 = 256 * 1024;

/// Bytes of the embedded store each connection reads through a memory map instead of read calls:
/// a call read through the account index is a descent of the calls' key b-tree, and mapped pages
/// skip the copy and the page-cache bookkeeping of each step. Address space only; the kernel
/// shares the mapped pages with its file cache.
pub const SQLITE_MMAP_BYTES: i64 = 64 << 30;

/// WAL pages (4 KiB) written before the embedded store checkpoints: 64 MiB, so checkpoints copy
/// pages back less often than SQLite's default of 1000 pages.
pub const SQLITE_WAL_CHECKPOINT_PAGES: i64 = 16_384;

/// How a writer of the embedded store waits for another connection's write transaction: first
/// `SQLITE_BUSY_QUICK_RETRIES` retries `SQLITE_BUSY_QUICK_WAIT_MICROSECONDS` apart (write
/// transactions here last well under a millisecond), then one every millisecond until
/// `SQLITE_BUSY_TIMEOUT_MILLISECONDS` have passed. SQLite's own busy timeout sleeps 1, 2, 5, 10 ms
/// and longer between tries, so a conflict lasting microseconds cost the call authorizer
/// milliseconds.
pub const SQLITE_BUSY_QUICK_RETRIES: i32 = 100;
pub const SQLITE_BUSY_QUICK_WAIT_MICROSECONDS: u64 = 50;
pub const SQLITE_BUSY_TIMEOUT_MILLISECONDS: i32 = 30_000;

/// Longest source, cdr_id or account accepted, in bytes. Real identifiers are tens of bytes; the
/// bound keeps the dedupe key well inside PostgreSQL's index entry limit (about 2.7 KB).
pub const IDENTIFIER_BYTES_MAX: usize = 256;

/// Longest caller kept as text when it is not a number (a SIP URI or a name).
pub const CALLER_TEXT_BYTES_MAX: usize = 256;

/// Longest CGRateS usage read (`1h2m3.456789s` is 13 bytes): longer text is no duration, so it
/// is refused before any arithmetic.
pub const USAGE_TEXT_BYTES_MAX: usize = 64;

/// Longest wait for a PostgreSQL connection to be set up.
pub const POSTGRES_CONNECT_TIMEOUT_SECONDS: u64 = 10;

/// Longest a PostgreSQL statement may run: a batch's statements take about a second at most, so a
/// statement still running after this is stuck, and the batch is retried instead.
pub const POSTGRES_STATEMENT_TIMEOUT_SECONDS: u64 = 300;

/// Longest a PostgreSQL statement waits for a lock (an import, another instance's batch).
pub const POSTGRES_LOCK_TIMEOUT_SECONDS: u64 = 60;

/// Requests rated at the same time by HTTP intake; more wait for their turn, so memory stays
/// bounded however many clients send at once.
pub const HTTP_RATING_CONCURRENCY_MAX: usize = 4;

/// How often the daemon looks for auto-recharges that have come due. A recharge runs within this
/// long after its local time; the store keeps it to once per account and local day.
pub const RECHARGE_CHECK_SECONDS: u64 = 30;

/// Held calls classified per transaction by the trunk sweep, and how often the daemon sweeps.
pub const SWEEP_PAGE_CALLS: usize = 10_000;
pub const SWEEP_CHECK_SECONDS: u64 = 5;
/// Times a sweep page is read again after another instance's sweep moved first.
pub const SWEEP_CONFLICT_RETRIES_MAX: u32 = 8;

/// Calls priced and revised per transaction by `tollgate rerate`.
pub const RERATE_PAGE_CALLS: usize = 10_000;

/// How long one webhook request may take, connect to last byte.
pub const WEBHOOK_TIMEOUT_SECONDS: u64 = 10;

/// How often the deliverer looks for alerts due, and how many it claims at once.
pub const WEBHOOK_POLL_MILLISECONDS: u64 = 500;
pub const WEBHOOK_CLAIM_MAX: usize = 32;

/// A claimed alert is not claimed again for this long (a delivery that died is retried after it):
/// longer than sending a whole claim one after another at the longest request time.
pub const WEBHOOK_LEASE_SECONDS: u64 = WEBHOOK_CLAIM_MAX as u64 * WEBHOOK_TIMEOUT_SECONDS + 60;

/// The longest wait between two attempts, whatever the backoff doubling reaches.
pub const WEBHOOK_RETRY_WAIT_SECONDS_MAX: u64 = 3_600;

/// Default attempts at delivering one alert (about 4 hours of doubling waits from 1 s, capped
/// at an hour each), then it is marked failed.
pub const WEBHOOK_ATTEMPTS_MAX: u32 = 16;
pub const WEBHOOK_RETRY_MILLISECONDS: u64 = 1_000;

/// An authorized call neither kept alive nor ended for this long is released (default).
pub const CALL_TTL_SECONDS: u32 = 600;

/// The longest call an authorization allows (default): 4 hours.
pub const CALL_MAX_DURATION_SECONDS: u32 = 14_400;

/// How often the daemon releases expired calls.
pub const CALL_EXPIRY_CHECK_SECONDS: u64 = 5;

/// Call authorizations (authorize, keepalive, end) waiting for the authorizer thread; a full
/// queue answers 503.
pub const CALL_QUEUE_MAX: usize = 4_096;

/// The most call requests answered in one store transaction.
pub const CALL_BATCH_MAX: usize = 256;

/// How long the daemon holds an unauthorized call of an account with limits before the trunk sweep
/// classifies it (default), counted from the call's start: calls up to about this long classify
/// exactly; a CDR arriving later is classified late, against what is known then.
pub const TRUNK_SETTLE_SECONDS: u32 = 3_600;

/// How long an ended call's reserved money waits for its CDR (default): an hour.
pub const CALL_SETTLE_SECONDS: u32 = 3_600;

/// How long a denial is kept to recognise its call's CDR should the call happen anyway (flagged
/// limit_exceeded); after that the denial is closed, and posting stops looking for its CDR.
pub const DENIAL_KEPT_SECONDS: i64 = 86_400;

/// Calls per page of the portal's call listings: the default and the most a client may ask for.
pub const PORTAL_PAGE_DEFAULT: usize = 100;
pub const PORTAL_PAGE_MAX: usize = 1_000;

/// A usage export reads the store this many calls at a time, keeps at most this many pages of
/// calls read ahead of its encoder and this many encoded pages waiting for a slow client, and
/// covers at most this many days.
pub const EXPORT_PAGE_CALLS: usize = 10_000;
pub const EXPORT_CALL_PAGES_QUEUED_MAX: usize = 2;
/// Store connections (and threads) reading one export's calls, alternate accounts each, while
/// another thread encodes: on two cores, reading is the larger half of an export's work.
pub const EXPORT_READERS: usize = 2;
pub const EXPORT_PAGES_QUEUED_MAX: usize = 4;
pub const EXPORT_RANGE_DAYS_MAX: i64 = 93;
/// Exports streaming at once (each holds `EXPORT_READERS` store connections while its client
/// reads); more are answered 503 with `Retry-After`.
pub const EXPORTS_CONCURRENT_MAX: usize = 2;

/// Largest body of a portal request (credits, billing-period closes): those are a few fields;
/// anything bigger is answered 413 before it is read into memory.
pub const PORTAL_BODY_BYTES_MAX: usize = 16 << 10;

/// Requests per second each portal token may make, and the burst it may save up. A portal that
/// pages through calls for one customer stays far below; a script looping on a token is slowed
/// to this with 429 and `Retry-After`, so one tenant cannot starve the others' reads.
pub const PORTAL_REQUESTS_PER_SECOND: u32 = 50;
pub const PORTAL_REQUEST_BURST: u32 = 100;

/// Tokens whose request budget is remembered at once. Budgets are kept by the Authorization
/// header's digest, so a client sending random tokens cannot grow the table without bound: past
/// this many, budgets that are full again are forgotten.
pub const PORTAL_REQUEST_BUDGETS_MAX: usize = 100_000;

/// Rows per row group of a Parquet usage export: the writer holds one row group while it fills,
/// so this bounds an export's memory; large enough that readers scan efficiently.
pub const EXPORT_PARQUET_ROW_GROUP_ROWS: usize = 64 * 1024;

/// Page cache of an export's own embedded-store connection, in KiB: an export reads each call
/// once, so a cache the size of the poster's would only hold memory for the export's lifetime.
pub const EXPORT_CACHE_KIBIBYTES: i64 = 8 * 1024;
