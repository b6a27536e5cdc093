///usr/bin/env jbang "$0" "$@" ; exit $?
//JAVA 17+
//DEPS info.picocli:picocli:4.7.7
//DEPS org.postgresql:postgresql:42.7.14
//DEPS tech.tablesaw:tablesaw-core:0.44.4
//DEPS com.fasterxml.jackson:jackson-bom:2.21.3@pom
//DEPS com.fasterxml.jackson.core:jackson-databind
//DEPS org.slf4j:slf4j-nop:2.0.17
//DESCRIPTION Repairs historical Codex `task_usage.input_tokens` rows that counted cached input twice.
//DESCRIPTION
//DESCRIPTION     backfill_codex_usage_cache --cutoff 2026-06-13T08:00:00Z [--workspace-id UUID] [--execute]
//DESCRIPTION         [--batch-size 1000] [--sleep-between-batches 1s] [--rebuild-rollup=true|false]
//DESCRIPTION
//DESCRIPTION Dry-run by default: prints per workspace and UTC date what would change.
//DESCRIPTION `--execute` writes in short batches and rebuilds the hourly rollup.
//DESCRIPTION Exit codes: 0 done, 1 failed or incomplete (re-run), 2 bad usage.

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Array;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.ExitCode;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine.TypeConversionException;
import tech.tablesaw.api.DateColumn;
import tech.tablesaw.api.LongColumn;
import tech.tablesaw.api.StringColumn;
import tech.tablesaw.api.Table;

/**
 * Corrects historical Codex {@code task_usage} rows whose {@code input_tokens} included the cached
 * input that is also stored in {@code cache_read_tokens}.
 *
 * <p>This is a one-time, operator-run repair, not a general migration. Its boundaries:
 * <ul>
 *   <li>dry-run is the default; nothing is written without {@code --execute};
 *   <li>only rows with provider 'codex', {@code cache_read_tokens > 0}, {@code input_tokens > 0}
 *       and {@code COALESCE(updated_at, created_at) < --cutoff} (and, if given, in the workspace)
 *       are touched; rows without stored cache tokens cannot be reconstructed and are left alone;
 *   <li>the cutoff must be the real deployment time of the ingestion fix and lie in the past;
 *   <li>each write sets {@code updated_at = now()} and re-checks eligibility, so a row that
 *       ingestion changed meanwhile, or that an earlier run corrected, is never corrected twice;
 *   <li>the hourly rollup is rebuilt for the update window unless {@code --rebuild-rollup=false},
 *       holding advisory lock 4246 only while a rollup call runs; a table the tool owns records
 *       each run's window so a later run finishes the rollup of a run that died.
 * </ul>
 */
@Command(
        name = "backfill_codex_usage_cache",
        mixinStandardHelpOptions = true,
        version = "backfill_codex_usage_cache 1.0.0",
        sortOptions = false,
        usageHelpAutoWidth = true,
        description = {
            "Repairs historical Codex task_usage rows whose input_tokens counted cached input twice:",
            "  input_tokens := GREATEST(input_tokens - cache_read_tokens, 0), updated_at := now().",
            "Dry-run by default; review the summary, then re-run with --execute."
        },
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {
            "0:done, including nothing eligible",
            "1:failed, or incomplete (rows left locked, rollup pending); re-running is safe",
            "2:bad usage (flags, URL, cutoff); nothing was written"
        })
public class backfill_codex_usage_cache implements Callable<Integer> {

    static final String NAME = "backfill_codex_usage_cache";
    static final long ROLLUP_ADVISORY_LOCK_ID = 4246;
    static final String RUNS_TABLE = "backfill_codex_usage_cache_runs";
    static final String QUEUE_TABLE_PREFIX = "backfill_codex_usage_cache_queue_";
    static final int MAX_BATCH_SIZE = 100_000;
    static final int TRANSIENT_RETRIES = 3;
    /** A run whose heartbeat is older than this is taken as dead; its leftovers are cleaned up. */
    static final Duration STALE_RUN_AFTER = Duration.ofMinutes(15);
    static final Duration IDLE_IN_TRANSACTION_TIMEOUT = Duration.ofMinutes(1);
    /** Serializes "is another run alive? then record mine" between runs (not the rollup's 4246). */
    static final long RUN_CLAIM_LOCK_ID = 0x6261636b66696c6cL; // "backfill"

    /** Runs recorded as running, with whether they look alive: backend connected, heartbeat recent. */
    static final String LIVE_RUNS_SQL = """
            SELECT r.run_id, r.backend_pid,
                   extract(epoch FROM clock_timestamp() - r.heartbeat_at)::bigint,
                   r.heartbeat_at > clock_timestamp() - ?::interval
                   AND EXISTS (SELECT 1 FROM pg_stat_activity a
                                WHERE a.pid = r.backend_pid AND a.backend_start = r.backend_start)
              FROM %s r
             WHERE r.status = 'running'""".formatted(RUNS_TABLE);

    @Spec
    CommandSpec spec;

    @Option(names = "--cutoff", required = true, paramLabel = "RFC3339",
            converter = CutoffConverter.class,
            description = "Deployment time of the ingestion fix, with an offset (Z or +08:00); rows "
                    + "last written at or after it are never touched. Must lie in the past.")
    OffsetDateTime cutoff;

    @Option(names = "--workspace-id", paramLabel = "UUID", converter = WorkspaceIdConverter.class,
            description = "Limit the run to one workspace.")
    UUID workspaceId;

    @Option(names = "--execute",
            description = "Write the correction. Without it the run is a dry-run and writes nothing.")
    boolean execute;

    @Option(names = "--batch-size", defaultValue = "1000", paramLabel = "N",
            description = "Rows per write transaction (1.." + MAX_BATCH_SIZE + "). Default: ${DEFAULT-VALUE}.")
    int batchSize;

    @Option(names = "--sleep-between-batches", defaultValue = "0s", paramLabel = "DURATION",
            converter = GoDurationConverter.class,
            description = "Pause between write batches to throttle load (500ms, 1s, 1m30s). "
                    + "Default: ${DEFAULT-VALUE}.")
    Duration sleepBetweenBatches;

    @Option(names = "--rebuild-rollup", arity = "0..1", defaultValue = "true", fallbackValue = "true",
            paramLabel = "true|false",
            description = "Rebuild task_usage_hourly for the update window after writing. Leave it "
                    + "on unless a separate rollup rebuild is planned. Default: true.")
    boolean rebuildRollup;

    @Option(names = "--database-url", paramLabel = "URL",
            description = "postgres://user:pass@host:5432/db?sslmode=require or jdbc:postgresql:... "
                    + "Default: $DATABASE_URL, else the PGHOST/PGPORT/PGDATABASE/PGUSER/PGPASSWORD "
                    + "variables (and ~/.pgpass).")
    String databaseUrl;

    @Option(names = "--format", defaultValue = "table", paramLabel = "table|csv|json",
            description = "Summary format: table (terminal), csv or json. Default: ${DEFAULT-VALUE}.")
    SummaryFormat format;

    @Option(names = "--output", paramLabel = "FILE",
            description = "Write the summary to FILE instead of standard output.")
    Path output;

    @Option(names = "--statement-timeout", defaultValue = "1m", paramLabel = "DURATION",
            converter = GoDurationConverter.class,
            description = "Longest a single write (one batch) may run before it is cancelled and "
                    + "retried. Scans and rollup calls are not limited. Default: ${DEFAULT-VALUE}.")
    Duration statementTimeout;

    @Option(names = "--lock-timeout", defaultValue = "5s", paramLabel = "DURATION",
            converter = GoDurationConverter.class,
            description = "Longest a write waits for a lock held by another session. "
                    + "Default: ${DEFAULT-VALUE}.")
    Duration lockTimeout;

    @Option(names = "--allow-later-cutoff",
            description = "Allow --execute with a cutoff later than one an earlier run used to correct "
                    + "rows (only when that earlier cutoff was wrong).")
    boolean allowLaterCutoff;

    @Option(names = "--locked-row-retries", defaultValue = "5", paramLabel = "N",
            description = "Rounds of retrying rows another session held locked (waits 0.5s, 1s, "
                    + "2s, ...); rows still locked are reported and the exit code is 1. "
                    + "Default: ${DEFAULT-VALUE}.")
    int lockedRowRetries;

    @Option(names = "--rollup-slice-rows", defaultValue = "500000", paramLabel = "N",
            description = "Split the rollup rebuild into calls covering about N updated rows each, "
                    + "so advisory lock 4246 is released between calls; 0 = one call. Each call also "
                    + "pays a pass over all usage rows, so smaller slices hold the lock for less time "
                    + "but cost more in all. Default: ${DEFAULT-VALUE}.")
    long rollupSliceRows;

    @Option(names = "--rollup-lock-wait", defaultValue = "5m", paramLabel = "DURATION",
            converter = GoDurationConverter.class,
            description = "Longest to wait for advisory lock 4246 (the platform's rollup tick or a "
                    + "workspace deletion may hold it) before giving up. Default: ${DEFAULT-VALUE}.")
    Duration rollupLockWait;

    Map<String, String> environment = System.getenv();
    Reporter out;
    final StopSignal stop = new StopSignal();

    /** pgjdbc logs through java.util.logging to stderr; its warnings would break the one-line rule. */
    static final java.util.logging.Logger PGJDBC_LOG = java.util.logging.Logger.getLogger("org.postgresql");

    static {
        PGJDBC_LOG.setLevel(java.util.logging.Level.OFF);
    }

    public static void main(String... args) {
        System.exit(newCommandLine(new backfill_codex_usage_cache()).execute(args));
    }

    static CommandLine newCommandLine(backfill_codex_usage_cache command) {
        CommandLine cmd = new CommandLine(command);
        cmd.setCaseInsensitiveEnumValuesAllowed(true);
        // An argument starting with @ is a value (a password file must not be read into a message).
        cmd.setExpandAtFiles(false);
        cmd.setParameterExceptionHandler((ex, args) -> {
            PrintWriter err = ex.getCommandLine().getErr();
            err.println(Reporter.ERROR_PREFIX + command.redact(Reporter.oneLine(usageMessage(ex))));
            err.flush();
            return ExitCode.USAGE;
        });
        cmd.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            PrintWriter err = commandLine.getErr();
            String message = ex instanceof StepFailure || ex instanceof UsageError
                    ? ex.getMessage() : "unexpected " + ex;
            err.println(Reporter.ERROR_PREFIX + command.redact(Reporter.oneLine(firstLine(message))));
            err.flush();
            return ex instanceof UsageError ? ExitCode.USAGE : ExitCode.SOFTWARE;
        });
        return cmd;
    }

    static String usageMessage(ParameterException ex) {
        String message = ex.getMessage();
        if (ex instanceof CommandLine.UnmatchedArgumentException
                || ex instanceof CommandLine.MissingParameterException) {
            return message + " (see --help)";
        }
        return message;
    }

    @Override
    public Integer call() throws Exception {
        out = new Reporter(spec.commandLine().getErr());
        stop.install(out);
        validate();
        DatabaseTarget target = DatabaseTarget.resolve(databaseUrl, environment);
        out.addSecrets(target.secrets());
        target.notes().forEach(out::warn);
        out.info("starting %s: mode=%s cutoff=%s scope=%s database=%s", NAME,
                execute ? "execute" : "dry-run", formatInstant(cutoff), scopeLabel(), target.display());

        try (Connection conn = target.connect()) {
            checkCutoffAgainstDatabaseClock(conn);
            preflight(conn);
            checkWorkspaceExists(conn);
            boolean hasRunRecords = queryOne(conn, "SELECT to_regclass('" + RUNS_TABLE + "') IS NOT NULL",
                    rs -> rs.getBoolean(1));
            if (hasRunRecords) {
                checkCutoffAgainstEarlierRuns(conn);
            }
            List<SummaryRow> summary = loadDryRunSummary(conn);
            Totals totals = Totals.of(summary);
            printSummary(summary, totals);
            warnIfMostlyClamped(totals);
            if (totals.rows() == 0) {
                out.info("no eligible Codex task_usage rows found; nothing to do");
            }

            if (!execute) {
                List<RunRecord> pending = hasRunRecords ? loadPendingRuns(conn, 0) : List.of();
                pending.forEach(run -> out.warn("run %d (%s) updated %d rows but its rollup is not "
                        + "complete; --execute will rebuild window %s..%s first", run.runId(),
                        run.status(), run.rowsUpdated(), formatInstant(run.windowFrom()),
                        formatInstant(run.windowTo())));
                if (totals.rows() > 0) {
                    out.info("dry-run complete; review the summary, then re-run with --execute "
                            + "to apply the backfill");
                }
                return ExitCode.OK;
            }
            if (totals.rows() == 0 && !hasRunRecords) {
                return ExitCode.OK;
            }
            Backfill backfill = new Backfill(conn, totals);
            try {
                return backfill.run();
            } catch (SQLException | RuntimeException e) {
                backfill.markFailed();
                if (e instanceof RuntimeException runtime) {
                    throw runtime;
                }
                throw new StepFailure("execute stopped: " + firstLine(e.getMessage()) + " (SQLState "
                        + ((SQLException) e).getSQLState() + ") after " + backfill.rowsUpdated
                        + " rows were committed; re-running the same command is safe", e);
            }
        } catch (SQLException e) {
            throw new StepFailure("database error: " + firstLine(e.getMessage()) + " (SQLState "
                    + e.getSQLState() + "); nothing was written", e);
        }
    }

    void validate() {
        if (batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
            throw usage("--batch-size", String.valueOf(batchSize),
                    "must be between 1 and " + MAX_BATCH_SIZE
                            + " (one batch is one transaction holding its row locks)");
        }
        if (lockedRowRetries < 0 || lockedRowRetries > 20) {
            throw usage("--locked-row-retries", String.valueOf(lockedRowRetries), "must be between 0 and 20");
        }
        if (rollupSliceRows < 0) {
            throw usage("--rollup-slice-rows", String.valueOf(rollupSliceRows),
                    "must be 0 (one call) or a positive number of rows");
        }
        requireBetween("--sleep-between-batches", sleepBetweenBatches, Duration.ZERO, Duration.ofHours(24));
        requireBetween("--rollup-lock-wait", rollupLockWait, Duration.ZERO, Duration.ofHours(24));
        // PostgreSQL takes these settings in milliseconds as a 32-bit integer (about 24.8 days).
        requireBetween("--statement-timeout", statementTimeout, Duration.ofMillis(1), Duration.ofMillis(Integer.MAX_VALUE));
        requireBetween("--lock-timeout", lockTimeout, Duration.ofMillis(1), Duration.ofMillis(Integer.MAX_VALUE));
        Instant now = Instant.now();
        if (!cutoff.toInstant().isBefore(now)) {
            throw usage("--cutoff", formatInstant(cutoff), "must be in the past (now "
                    + formatInstant(now) + "); a future cutoff could correct rows written after the "
                    + "fix, which already exclude cached input");
        }
        if (output != null) {
            Path parent = output.toAbsolutePath().getParent();
            if (Files.isDirectory(output)) {
                throw usage("--output", output.toString(), "is a directory; give a file name");
            }
            if (parent == null || !Files.isDirectory(parent)) {
                throw usage("--output", output.toString(), "its directory does not exist");
            }
            if (!Files.isWritable(parent) && !Files.isWritable(output)) {
                throw usage("--output", output.toString(), "is not writable by this user");
            }
        }
    }

    void requireBetween(String option, Duration value, Duration min, Duration max) {
        if (value.compareTo(min) < 0) {
            throw usage(option, GoDurationConverter.format(value), min.isZero() ? "must not be negative"
                    : "must be at least " + GoDurationConverter.format(min));
        }
        if (value.compareTo(max) > 0) {
            throw usage(option, GoDurationConverter.format(value), "must be at most "
                    + GoDurationConverter.format(max));
        }
    }

    ParameterException usage(String option, String value, String reason) {
        return new ParameterException(spec.commandLine(),
                "Invalid value '" + value + "' for option '" + option + "': " + reason);
    }

    String scopeLabel() {
        return workspaceId == null ? "all workspaces" : "workspace " + workspaceId;
    }

    String redact(String text) {
        return out == null ? text : out.redact(text);
    }

    // ---------------------------------------------------------------- preflight and clock

    void checkCutoffAgainstDatabaseClock(Connection conn) throws SQLException {
        OffsetDateTime dbNow = queryOne(conn, "SELECT now()", rs -> rs.getObject(1, OffsetDateTime.class));
        if (!cutoff.isBefore(dbNow)) {
            throw usage("--cutoff", formatInstant(cutoff), "must be in the past by the database "
                    + "clock (now " + formatInstant(dbNow) + "); a future cutoff could correct rows "
                    + "written after the fix");
        }
    }

    void checkWorkspaceExists(Connection conn) throws SQLException {
        if (workspaceId != null && !queryOne(conn, "SELECT EXISTS (SELECT 1 FROM agent WHERE workspace_id = ?)",
                rs -> rs.getBoolean(1), workspaceId)) {
            throw usage("--workspace-id", workspaceId.toString(), "no agent in this database belongs to "
                    + "that workspace; check the id and the database");
        }
    }

    /**
     * A later cutoff than one that already corrected rows would also correct rows the fixed
     * ingestion wrote between the two: refused for --execute unless explicitly allowed.
     */
    void checkCutoffAgainstEarlierRuns(Connection conn) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement("SELECT run_id, cutoff FROM " + RUNS_TABLE
                + " WHERE rows_updated > 0 AND cutoff < ? ORDER BY cutoff LIMIT 1")) {
            ps.setObject(1, cutoff);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) {
                    return;
                }
                String reason = "it is later than cutoff " + formatInstant(rs.getObject(2, OffsetDateTime.class))
                        + " that run " + rs.getLong(1) + " used to correct rows; rows the fixed ingestion "
                        + "wrote between the two would be corrected wrongly. Use the same cutoff, or pass "
                        + "--allow-later-cutoff if the earlier one was wrong";
                if (execute && !allowLaterCutoff) {
                    throw usage("--cutoff", formatInstant(cutoff), reason);
                }
                out.warn("--cutoff %s: %s", formatInstant(cutoff), reason);
            }
        }
    }

    void warnIfMostlyClamped(Totals totals) {
        if (totals.rows() > 0 && totals.clampedRows() * 10 > totals.rows()) {
            out.warn("%d of %d eligible rows (%.0f%%) would be clamped to 0; that is unusual for rows "
                    + "written before the fix and may mean --cutoff is later than its real deployment",
                    totals.clampedRows(), totals.rows(), percent(totals.clampedRows(), totals.rows()));
        }
    }

    static final String REQUIRED_COLUMNS_SQL = """
            SELECT r.tbl, r.col
              FROM (VALUES ('task_usage', 'id'), ('task_usage', 'task_id'),
                           ('task_usage', 'provider'), ('task_usage', 'input_tokens'),
                           ('task_usage', 'cache_read_tokens'), ('task_usage', 'created_at'),
                           ('task_usage', 'updated_at'), ('agent_task_queue', 'id'),
                           ('agent_task_queue', 'agent_id'), ('agent', 'id'),
                           ('agent', 'workspace_id')) AS r(tbl, col)
             WHERE NOT EXISTS (
                   SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = to_regclass(r.tbl)
                      AND a.attname = r.col AND a.attnum > 0 AND NOT a.attisdropped)
            """;

    static final String PRIVILEGES_SQL = """
            SELECT has_table_privilege(to_regclass('task_usage'), 'SELECT'),
                   has_table_privilege(to_regclass('task_usage'), 'UPDATE'),
                   has_table_privilege(to_regclass('agent_task_queue'), 'SELECT'),
                   has_table_privilege(to_regclass('agent'), 'SELECT'),
                   to_regprocedure('rollup_task_usage_hourly_window(timestamptz, timestamptz)') IS NOT NULL,
                   COALESCE(has_function_privilege(
                       to_regprocedure('rollup_task_usage_hourly_window(timestamptz, timestamptz)'),
                       'EXECUTE'), false),
                   has_schema_privilege(current_schema(), 'CREATE'),
                   current_schema(),
                   current_user
            """;

    /** Checks tables, columns, the rollup function and privileges before anything is read or written. */
    void preflight(Connection conn) throws SQLException {
        List<String> missing = new ArrayList<>();
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(REQUIRED_COLUMNS_SQL)) {
            while (rs.next()) {
                missing.add(rs.getString(1) + "." + rs.getString(2));
            }
        }
        if (!missing.isEmpty()) {
            throw new StepFailure("preflight: the database lacks " + String.join(", ", missing)
                    + "; point --database-url at the platform's database (search_path "
                    + queryOne(conn, "SELECT current_setting('search_path')", rs -> rs.getString(1))
                    + ")");
        }
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(PRIVILEGES_SQL)) {
            rs.next();
            String role = rs.getString(9);
            if (!rs.getBoolean(1) || !rs.getBoolean(3) || !rs.getBoolean(4)) {
                throw new StepFailure("preflight: role " + role + " may not read task_usage, "
                        + "agent_task_queue and agent; grant SELECT on them");
            }
            boolean rollupExists = rs.getBoolean(5);
            if (rebuildRollup && !rollupExists) {
                throw new StepFailure("preflight: function rollup_task_usage_hourly_window(timestamptz, "
                        + "timestamptz) does not exist; run the platform's migrations first, or pass "
                        + "--rebuild-rollup=false and rebuild task_usage_hourly separately");
            }
            if (!execute) {
                return;
            }
            if (!rs.getBoolean(2)) {
                throw new StepFailure("preflight: role " + role + " may not UPDATE task_usage; "
                        + "run --execute as the platform's migration/owner role");
            }
            if (rebuildRollup && !rs.getBoolean(6)) {
                throw new StepFailure("preflight: role " + role + " may not EXECUTE "
                        + "rollup_task_usage_hourly_window; grant it, or pass --rebuild-rollup=false");
            }
            if (!rs.getBoolean(7)) {
                throw new StepFailure("preflight: role " + role + " may not CREATE tables in schema "
                        + rs.getString(8) + "; --execute keeps its run record and work queue in "
                        + "tables it owns there");
            }
        }
    }

    // ---------------------------------------------------------------- dry-run summary

    /** The eligibility rules of DESIGN.md, on alias {@code tu}; parameter 1 is the cutoff. */
    static final String ELIGIBLE = """
            tu.provider = 'codex'
               AND tu.cache_read_tokens > 0
               AND tu.input_tokens > 0
               AND COALESCE(tu.updated_at, tu.created_at) < ?""";

    // NOTE: these column aliases are read by the runbook and by reviewers' scripts; keep them.
    static final String SUMMARY_SQL = """
            SELECT a.workspace_id::text AS workspace_id,
                   (tu.created_at AT TIME ZONE 'UTC')::date AS date_utc,
                   count(*) AS rows,
                   sum(tu.input_tokens)::bigint AS input_before,
                   sum(GREATEST(tu.input_tokens - tu.cache_read_tokens, 0))::bigint AS input_after,
                   sum(tu.input_tokens - GREATEST(tu.input_tokens - tu.cache_read_tokens, 0))::bigint
                       AS input_tokens_removed,
                   count(*) FILTER (WHERE tu.input_tokens < tu.cache_read_tokens) AS clamped_rows,
                   min(tu.created_at) AS first_created_at,
                   max(tu.created_at) AS last_created_at
              FROM task_usage tu
              JOIN agent_task_queue atq ON atq.id = tu.task_id
              JOIN agent a ON a.id = atq.agent_id
             WHERE %s %s
             GROUP BY 1, 2
             ORDER BY 1, 2
            """;

    List<SummaryRow> loadDryRunSummary(Connection conn) throws SQLException {
        String sql = SUMMARY_SQL.formatted(ELIGIBLE, workspaceId == null ? "" : "AND a.workspace_id = ?");
        List<SummaryRow> rows = new ArrayList<>();
        // The server aggregates; only groups cross the wire, streamed with a cursor.
        inTransaction(conn, Duration.ZERO, () -> {
            try (PreparedStatement ps = conn.prepareStatement(sql)) {
                ps.setFetchSize(1000);
                ps.setObject(1, cutoff);
                if (workspaceId != null) {
                    ps.setObject(2, workspaceId);
                }
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        rows.add(new SummaryRow(rs.getString(1), rs.getObject(2, LocalDate.class),
                                rs.getLong(3), rs.getLong(4), rs.getLong(5), rs.getLong(6),
                                rs.getLong(7), rs.getObject(8, OffsetDateTime.class),
                                rs.getObject(9, OffsetDateTime.class)));
                    }
                }
            }
            return null;
        }, "load dry-run summary");
        return rows;
    }

    void printSummary(List<SummaryRow> rows, Totals totals) throws IOException {
        out.info("candidate total: rows=%d input_before=%d input_after=%d input_tokens_removed=%d "
                + "clamped_rows=%d groups=%d", totals.rows(), totals.inputBefore(), totals.inputAfter(),
                totals.inputTokensRemoved(), totals.clampedRows(), rows.size());
        if (rows.isEmpty() && format == SummaryFormat.table && output == null) {
            return;
        }
        String text = SummaryFormat.render(format, rows, totals, cutoff, workspaceId);
        if (output != null) {
            try {
                Files.writeString(output, text, StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new StepFailure("cannot write the summary to " + output + ": " + e
                        + "; nothing was written to the database");
            }
            out.info("summary written to %s (%s)", output, format);
        } else {
            PrintWriter stdout = spec.commandLine().getOut();
            stdout.print(text);
            stdout.flush();
        }
    }

    // ---------------------------------------------------------------- run records

    static final String CREATE_RUNS_TABLE_SQL = """
            CREATE TABLE IF NOT EXISTS %s (
                run_id               bigserial PRIMARY KEY,
                started_at           timestamptz NOT NULL DEFAULT now(),
                heartbeat_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
                backend_pid          integer,
                backend_start        timestamptz,
                finished_at          timestamptz,
                status               text NOT NULL DEFAULT 'running',
                cutoff               timestamptz NOT NULL,
                workspace_id         uuid,
                batch_size           integer NOT NULL,
                rebuild_rollup       boolean NOT NULL,
                eligible_at_start    bigint NOT NULL,
                rows_updated         bigint NOT NULL DEFAULT 0,
                input_tokens_removed bigint NOT NULL DEFAULT 0,
                window_from          timestamptz,
                window_to            timestamptz,
                rolled_up_to         timestamptz,
                rollup_completed_at  timestamptz
            )""".formatted(RUNS_TABLE);

    /**
     * Runs whose recorded update window is not rolled up to its end. An --execute run reads them
     * only after making sure no other run is alive (see claimRun): a live run may still commit a
     * batch whose updated_at falls inside a window rolled up before that commit.
     */
    static final String PENDING_RUNS_SQL = """
            SELECT %s
              FROM %s
             WHERE window_from IS NOT NULL AND (rolled_up_to IS NULL OR rolled_up_to < window_to)
               AND run_id <> ?
             ORDER BY run_id""".formatted(RunRecord.COLUMNS, RUNS_TABLE);

    List<RunRecord> loadPendingRuns(Connection conn, long exceptRunId) throws SQLException {
        List<RunRecord> runs = new ArrayList<>();
        try (PreparedStatement ps = conn.prepareStatement(PENDING_RUNS_SQL)) {
            ps.setLong(1, exceptRunId);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    runs.add(RunRecord.read(rs));
                }
            }
        }
        return runs;
    }

    // ---------------------------------------------------------------- execute

    /** One {@code --execute} run: queue, batches, locked-row retries, rollup, verification. */
    final class Backfill {
        final Connection conn;
        final Totals expected;
        final long startNanos = System.nanoTime();
        long runId;
        String queueTable;
        long rowsUpdated;
        long tokensRemoved;
        long clampedRows;
        long skippedChanged;
        final List<UUID> locked = new ArrayList<>();
        long rollupRowsTouched;
        boolean rollupIncomplete;

        Backfill(Connection conn, Totals expected) {
            this.conn = conn;
            this.expected = expected;
        }

        int run() throws SQLException {
            ensureRunsTable();
            claimRun();
            dropLeftoverQueues();
            if (rebuildRollup) {
                for (RunRecord earlier : loadPendingRuns(conn, runId)) {
                    out.info("run %d left its rollup incomplete; rebuilding its window first", earlier.runId());
                    rebuildRollupFor(earlier);
                    if (rollupIncomplete) {
                        return finish("rollup of an earlier run could not complete");
                    }
                }
            }
            if (expected.rows() == 0) {
                return finish(null);
            }
            long batches = buildQueue();
            stop.enterWritePhase();
            for (int batch = 0; batch < batches && !stop.requested(); batch++) {
                if (batch > 0 && !stop.sleep(sleepBetweenBatches)) {
                    break;
                }
                writeBatch(batch, batches, readQueueBatch(batch));
            }
            if (!stop.requested()) {
                retryLockedRows();
            }
            dropQueue();
            if (rebuildRollup) {
                rebuildRollupFor(loadRun(runId));
            }
            return finish(stop.requested() ? "stopped by " + stop.signalName() : null);
        }

        void ensureRunsTable() throws SQLException {
            inTransaction(conn, lockTimeout, () -> {
                try (Statement st = conn.createStatement()) {
                    st.execute(CREATE_RUNS_TABLE_SQL);
                }
                return null;
            }, "create run record table");
        }

        /**
         * Records this run, refusing to start while another run is alive: its backend is still
         * connected and its heartbeat is recent. Runs that died (kill -9, a dropped tunnel) are
         * marked abandoned. A transaction-scoped advisory lock makes the check and the insert
         * one step, so two runs started together cannot both pass.
         */
        void claimRun() throws SQLException {
            // A killed client's backend notices the closed socket within moments: look twice more.
            for (int attempt = 1; ; attempt++) {
                try {
                    runId = tryClaimRun();
                    break;
                } catch (StepFailure busy) {
                    if (attempt == 3) {
                        throw busy;
                    }
                    sleepQuietly(Duration.ofSeconds(1));
                }
            }
            queueTable = QUEUE_TABLE_PREFIX + runId;
            out.info("run %d recorded in %s", runId, RUNS_TABLE);
        }

        long tryClaimRun() throws SQLException {
            return inTransaction(conn, lockTimeout, () -> {
                queryOne(conn, "SELECT pg_advisory_xact_lock(?)", rs -> null, RUN_CLAIM_LOCK_ID);
                List<String> dead = new ArrayList<>();
                try (PreparedStatement ps = conn.prepareStatement(LIVE_RUNS_SQL)) {
                    ps.setString(1, STALE_RUN_AFTER.toSeconds() + " seconds");
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            if (rs.getBoolean(4)) {
                                throw new StepFailure("another --execute is in progress: run " + rs.getLong(1)
                                        + " (backend pid " + rs.getInt(2) + ", last batch " + rs.getLong(3)
                                        + "s ago); run one at a time: wait for it to finish or stop it first");
                            }
                            dead.add(String.valueOf(rs.getLong(1)));
                        }
                    }
                }
                if (!dead.isEmpty()) {
                    execute("UPDATE " + RUNS_TABLE + " SET status = 'abandoned', finished_at = clock_timestamp()"
                            + " WHERE run_id IN (" + String.join(",", dead) + ")");
                    out.warn("earlier run(s) %s died without cleaning up; marked abandoned", dead);
                }
                try (PreparedStatement ps = conn.prepareStatement("INSERT INTO " + RUNS_TABLE
                        + " (cutoff, workspace_id, batch_size, rebuild_rollup, eligible_at_start, backend_pid,"
                        + " backend_start) SELECT ?, ?, ?, ?, ?, pid, backend_start FROM pg_stat_activity"
                        + " WHERE pid = pg_backend_pid() RETURNING run_id")) {
                    ps.setObject(1, cutoff);
                    ps.setObject(2, workspaceId);
                    ps.setInt(3, batchSize);
                    ps.setBoolean(4, rebuildRollup);
                    ps.setLong(5, expected.rows());
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        return rs.getLong(1);
                    }
                }
            }, "record run start");
        }

        /** Work queues of runs that are over (finished, failed, abandoned) are dropped. */
        void dropLeftoverQueues() throws SQLException {
            List<String> leftovers = new ArrayList<>();
            try (PreparedStatement ps = conn.prepareStatement("""
                    SELECT c.relname FROM pg_class c
                      JOIN %s r ON c.relname = '%s' || r.run_id
                     WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
                       AND r.status <> 'running'""".formatted(RUNS_TABLE, QUEUE_TABLE_PREFIX));
                    ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    leftovers.add(rs.getString(1));
                }
            }
            for (String table : leftovers) {
                execute("DROP TABLE IF EXISTS " + table);
            }
            if (!leftovers.isEmpty()) {
                out.info("dropped %d work queue table(s) left by earlier runs", leftovers.size());
            }
        }

        /** Best effort after a failure: the run is over and its queue can go; a dead connection skips it. */
        void markFailed() {
            if (runId == 0) {
                return;
            }
            try {
                conn.setAutoCommit(true);
                execute("UPDATE " + RUNS_TABLE + " SET status = 'failed', finished_at = clock_timestamp()"
                        + " WHERE run_id = " + runId);
                dropQueue();
            } catch (SQLException ignored) {
                // The next run finds this one dead and cleans up.
            }
        }

        /**
         * Snapshots the ids of eligible rows once, numbered into batches in scan order, so that each
         * batch is an index lookup of its own ids instead of a new search of the whole table.
         */
        long buildQueue() throws SQLException {
            String source = workspaceId == null
                    ? "task_usage tu WHERE " + ELIGIBLE
                    : "agent a JOIN agent_task_queue atq ON atq.agent_id = a.id"
                            + " JOIN task_usage tu ON tu.task_id = atq.id"
                            + " WHERE a.workspace_id = ? AND " + ELIGIBLE;
            long started = System.nanoTime();
            long queued = inTransaction(conn, Duration.ZERO, () -> {
                execute("CREATE UNLOGGED TABLE " + queueTable + " (batch_no integer NOT NULL, id uuid NOT NULL)");
                long count;
                try (PreparedStatement ps = conn.prepareStatement("INSERT INTO " + queueTable
                        + " (batch_no, id) SELECT ((row_number() OVER ()) - 1) / ?, tu.id FROM " + source)) {
                    int i = 1;
                    ps.setInt(i++, batchSize);
                    if (workspaceId != null) {
                        ps.setObject(i++, workspaceId);
                    }
                    ps.setObject(i, cutoff);
                    count = ps.executeUpdate();
                }
                execute("CREATE INDEX ON " + queueTable + " (batch_no)");
                execute("UPDATE " + RUNS_TABLE + " SET heartbeat_at = clock_timestamp() WHERE run_id = " + runId);
                return count;
            }, "build work queue");
            long batches = (queued + batchSize - 1) / batchSize;
            out.info("work queue %s: %d rows in %d batches of %d, built in %s", queueTable, queued,
                    batches, batchSize, elapsedSince(started));
            return batches;
        }

        List<UUID> readQueueBatch(int batch) throws SQLException {
            List<UUID> ids = new ArrayList<>(batchSize);
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT id FROM " + queueTable + " WHERE batch_no = ?")) {
                ps.setInt(1, batch);
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        ids.add(rs.getObject(1, UUID.class));
                    }
                }
            }
            return ids;
        }

        BatchResult updateAndCount(List<UUID> ids) throws SQLException {
            BatchResult result = updateBatch(ids);
            rowsUpdated += result.rows();
            tokensRemoved += result.inputTokensRemoved();
            clampedRows += result.clampedRows();
            skippedChanged += result.skippedChanged();
            locked.addAll(result.locked());
            return result;
        }

        void writeBatch(int batch, long batches, List<UUID> ids) throws SQLException {
            BatchResult result = updateAndCount(ids);
            out.info("batch %d/%d: rows=%d input_tokens_removed=%d total_rows=%d/%d (%.1f%%)%s%s "
                    + "rate=%s eta=%s", batch + 1, batches, result.rows(), result.inputTokensRemoved(),
                    rowsUpdated, expected.rows(), percent(rowsUpdated, expected.rows()),
                    result.skippedChanged() > 0 ? " skipped_changed=" + result.skippedChanged() : "",
                    result.locked().isEmpty() ? "" : " locked=" + result.locked().size() + " (retried later)",
                    rate(), eta(batch + 1, batches));
        }

        /**
         * Corrects the given rows in one transaction. Eligibility is re-checked on the row version
         * current at the write; rows locked by another session are skipped (and returned) instead of
         * waited on; the run record's update window grows in the same transaction, so it is durable
         * exactly when the rows are.
         */
        BatchResult updateBatch(List<UUID> ids) throws SQLException {
            String scope = workspaceId == null ? "" : """
                     AND EXISTS (SELECT 1 FROM agent_task_queue atq JOIN agent a ON a.id = atq.agent_id
                                  WHERE atq.id = tu.task_id AND a.workspace_id = ?)""";
            String update = """
                    WITH picked AS (
                        SELECT tu.id, tu.input_tokens AS input_before
                          FROM task_usage tu
                         WHERE tu.id = ANY(?) AND %1$s %2$s
                           FOR UPDATE OF tu SKIP LOCKED
                    ), updated AS (
                        UPDATE task_usage tu
                           SET input_tokens = GREATEST(tu.input_tokens - tu.cache_read_tokens, 0),
                               updated_at = now()
                          FROM picked p
                         WHERE tu.id = p.id AND %1$s
                        RETURNING p.input_before, tu.input_tokens AS input_after, tu.cache_read_tokens
                    )
                    SELECT count(*), COALESCE(sum(input_before - input_after), 0),
                           count(*) FILTER (WHERE input_before < cache_read_tokens)
                      FROM updated""".formatted(ELIGIBLE, scope);
            // Rows still eligible after our update in the same transaction are the ones we skipped
            // because another session held their lock.
            String stillEligible = "SELECT tu.id FROM task_usage tu WHERE tu.id = ANY(?) AND " + ELIGIBLE;
            String recordWindow = """
                    UPDATE %s
                       SET window_from = CASE WHEN ? > 0 THEN COALESCE(window_from, now() - interval '1 second')
                                              ELSE window_from END,
                           window_to = CASE WHEN ? > 0 THEN clock_timestamp() + interval '1 second'
                                            ELSE window_to END,
                           rows_updated = rows_updated + ?, input_tokens_removed = input_tokens_removed + ?,
                           heartbeat_at = clock_timestamp(), backend_pid = pg_backend_pid(),
                           backend_start = (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
                     WHERE run_id = ?""".formatted(RUNS_TABLE);
            return withRetries("update batch", () -> inTransaction(conn, statementTimeout, () -> {
                Array idArray = conn.createArrayOf("uuid", ids.toArray());
                long rows;
                long removed;
                long clamped;
                try (PreparedStatement ps = conn.prepareStatement(update)) {
                    ps.setArray(1, idArray);
                    ps.setObject(2, cutoff);
                    if (workspaceId != null) {
                        ps.setObject(3, workspaceId);
                    }
                    ps.setObject(workspaceId != null ? 4 : 3, cutoff);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        rows = rs.getLong(1);
                        removed = rs.getLong(2);
                        clamped = rs.getLong(3);
                    }
                }
                List<UUID> skippedLocked = new ArrayList<>();
                try (PreparedStatement ps = conn.prepareStatement(stillEligible)) {
                    ps.setArray(1, idArray);
                    ps.setObject(2, cutoff);
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            skippedLocked.add(rs.getObject(1, UUID.class));
                        }
                    }
                }
                try (PreparedStatement ps = conn.prepareStatement(recordWindow)) {
                    ps.setLong(1, rows);
                    ps.setLong(2, rows);
                    ps.setLong(3, rows);
                    ps.setLong(4, removed);
                    ps.setLong(5, runId);
                    ps.executeUpdate();
                }
                return new BatchResult(rows, removed, clamped,
                        ids.size() - rows - skippedLocked.size(), skippedLocked);
            }, "update batch"));
        }

        /** Rows another session held locked are retried a few rounds with backoff, then reported. */
        void retryLockedRows() throws SQLException {
            Duration backoff = Duration.ofMillis(500);
            for (int round = 1; round <= lockedRowRetries && !locked.isEmpty() && !stop.requested(); round++) {
                out.warn("retrying %d row(s) that were locked by another session (round %d/%d, after %s)",
                        locked.size(), round, lockedRowRetries, GoDurationConverter.format(backoff));
                stop.sleep(backoff);
                List<UUID> retry = new ArrayList<>(locked);
                locked.clear();
                for (int from = 0; from < retry.size(); from += batchSize) {
                    updateAndCount(retry.subList(from, Math.min(retry.size(), from + batchSize)));
                }
                backoff = backoff.multipliedBy(2);
            }
            if (!locked.isEmpty()) {
                out.warn("%d row(s) stayed locked by another session and were not corrected; "
                        + "re-run the same command later (first ids: %s)", locked.size(),
                        locked.subList(0, Math.min(5, locked.size())));
            }
        }

        void dropQueue() throws SQLException {
            if (queueTable != null) {
                execute("DROP TABLE IF EXISTS " + queueTable);
            }
        }

        RunRecord loadRun(long id) throws SQLException {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT " + RunRecord.COLUMNS + " FROM " + RUNS_TABLE + " WHERE run_id = ?")) {
                ps.setLong(1, id);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    return RunRecord.read(rs);
                }
            }
        }

        /**
         * Rebuilds task_usage_hourly for a run's update window in a few calls. Fresh statistics
         * first (outside any lock), then per slice one transaction that takes lock 4246, turns off
         * nested loops (the rollup's delete step is otherwise planned as a nested-loop anti-join
         * that does not finish at scale), calls the function and records progress.
         */
        void rebuildRollupFor(RunRecord run) throws SQLException {
            if (run.windowFrom() == null) {
                return;
            }
            OffsetDateTime from = run.rolledUpTo() == null || run.rolledUpTo().isBefore(run.windowFrom())
                    ? run.windowFrom() : run.rolledUpTo();
            OffsetDateTime to = run.windowTo();
            if (!from.isBefore(to)) {
                return;
            }
            long analyzeStarted = System.nanoTime();
            execute("ANALYZE task_usage");
            out.info("analyzed task_usage in %s", elapsedSince(analyzeStarted));
            List<OffsetDateTime[]> slices = RollupWindow.slices(from, to, run.rowsUpdated(), rollupSliceRows);
            for (int i = 0; i < slices.size(); i++) {
                OffsetDateTime[] slice = slices.get(i);
                long started = System.nanoTime();
                Long touched = callRollup(run.runId(), slice[0], slice[1]);
                if (touched == null) {
                    rollupIncomplete = true;
                    out.warn("rollup of run %d stopped at %s: advisory lock %d stayed busy for %s; "
                            + "re-run the same command to finish it", run.runId(), formatInstant(slice[0]),
                            ROLLUP_ADVISORY_LOCK_ID, GoDurationConverter.format(rollupLockWait));
                    return;
                }
                rollupRowsTouched += touched;
                out.info("rollup %d/%d: window=%s..%s rows_touched=%d took %s", i + 1, slices.size(),
                        formatInstant(slice[0]), formatInstant(slice[1]), touched, elapsedSince(started));
            }
            markRollupComplete(run.runId());
        }

        /** Returns the rows the rollup touched, or null when lock 4246 stayed busy too long. */
        Long callRollup(long id, OffsetDateTime from, OffsetDateTime to) throws SQLException {
            return withRetries("rebuild hourly rollup", () -> inTransaction(conn, Duration.ZERO, () -> {
                if (!acquireRollupLock()) {
                    return null;
                }
                execute("SET LOCAL enable_nestloop = off");
                long touched = queryOne(conn, "SELECT rollup_task_usage_hourly_window(?, ?)", rs -> rs.getLong(1),
                        from, to);
                try (PreparedStatement ps = conn.prepareStatement("UPDATE " + RUNS_TABLE
                        + " SET rolled_up_to = GREATEST(rolled_up_to, ?) WHERE run_id = ?")) {
                    ps.setObject(1, to);
                    ps.setLong(2, id);
                    ps.executeUpdate();
                }
                return touched;
            }, "rebuild hourly rollup"));
        }

        boolean acquireRollupLock() throws SQLException {
            long deadline = System.nanoTime() + rollupLockWait.toNanos();
            long nextNotice = 0;
            while (true) {
                if (queryOne(conn, "SELECT pg_try_advisory_xact_lock(?)", rs -> rs.getBoolean(1),
                        ROLLUP_ADVISORY_LOCK_ID)) {
                    return true;
                }
                long now = System.nanoTime();
                if (now >= deadline) {
                    return false;
                }
                if (now >= nextNotice) {
                    out.warn("advisory lock %d is busy (the platform's rollup tick or a workspace "
                            + "deletion holds it); waiting up to %s", ROLLUP_ADVISORY_LOCK_ID,
                            GoDurationConverter.format(rollupLockWait));
                    nextNotice = now + TimeUnit.SECONDS.toNanos(10);
                }
                sleepQuietly(Duration.ofMillis(Math.min(500, TimeUnit.NANOSECONDS.toMillis(deadline - now) + 1)));
            }
        }

        void markRollupComplete(long id) throws SQLException {
            execute("UPDATE " + RUNS_TABLE + " SET rollup_completed_at = clock_timestamp()"
                    + " WHERE run_id = " + id + " AND rolled_up_to >= window_to");
        }

        long countRemaining() throws SQLException {
            String sql = workspaceId == null
                    ? "SELECT count(*) FROM task_usage tu WHERE " + ELIGIBLE
                    : "SELECT count(*) FROM agent a JOIN agent_task_queue atq ON atq.agent_id = a.id"
                            + " JOIN task_usage tu ON tu.task_id = atq.id WHERE a.workspace_id = ? AND " + ELIGIBLE;
            return inTransaction(conn, Duration.ZERO, () -> workspaceId == null
                    ? queryOne(conn, sql, rs -> rs.getLong(1), cutoff)
                    : queryOne(conn, sql, rs -> rs.getLong(1), workspaceId, cutoff), "re-count eligible rows");
        }

        int finish(String stoppedReason) throws SQLException {
            long remaining = countRemaining();
            boolean complete = stoppedReason == null && remaining == 0 && locked.isEmpty() && !rollupIncomplete;
            String status = stoppedReason != null ? "stopped" : complete ? "finished" : "incomplete";
            if (runId > 0) {
                execute("UPDATE " + RUNS_TABLE + " SET status = '" + status + "', finished_at = clock_timestamp(),"
                        + " heartbeat_at = clock_timestamp() WHERE run_id = " + runId);
            }
            out.info("done: status=%s rows_updated=%d input_tokens_removed=%d clamped_rows=%d "
                    + "skipped_changed=%d left_locked=%d rollup_rows_touched=%d%s remaining_eligible=%d "
                    + "elapsed=%s", status, rowsUpdated, tokensRemoved, clampedRows, skippedChanged,
                    locked.size(), rollupRowsTouched, rebuildRollup ? "" : " (rollup not rebuilt: "
                    + "--rebuild-rollup=false)", remaining, elapsedSince(startNanos));
            if (complete) {
                out.info("verification passed: 0 eligible rows remain for this cutoff and scope");
                return ExitCode.OK;
            }
            if (stoppedReason != null) {
                out.warn("%s after %d rows; what was written is consistent and re-running the same "
                        + "command resumes safely", stoppedReason, rowsUpdated);
            } else {
                out.warn("incomplete: %d eligible row(s) remain%s; re-run the same command to finish",
                        remaining, rollupIncomplete ? " and the rollup is not complete" : "");
            }
            return ExitCode.SOFTWARE;
        }

        String rate() {
            double seconds = (System.nanoTime() - startNanos) / 1e9;
            return seconds <= 0 ? "-" : String.format(Locale.ROOT, "%.0f rows/s", rowsUpdated / seconds);
        }

        String eta(long done, long total) {
            if (done * 100 < total) {
                return "-";
            }
            double perBatch = (System.nanoTime() - startNanos) / 1e9 / done;
            return GoDurationConverter.format(Duration.ofSeconds(Math.round(perBatch * (total - done))));
        }

        void execute(String sql) throws SQLException {
            try (Statement st = conn.createStatement()) {
                st.execute(sql);
            }
        }
    }

    // ---------------------------------------------------------------- transactions and retries

    interface SqlWork<T> {
        T run() throws SQLException;
    }

    /**
     * Runs work in one transaction with the tool's limits set LOCAL to it, so nothing depends on
     * session state (safe behind a transaction-pooling PgBouncer). A zero statement timeout
     * means unlimited (long scans, rollup calls).
     */
    <T> T inTransaction(Connection conn, Duration timeout, SqlWork<T> work, String step) throws SQLException {
        conn.setAutoCommit(false);
        try {
            try (PreparedStatement ps = conn.prepareStatement("SELECT set_config('statement_timeout', ?, true),"
                    + " set_config('lock_timeout', ?, true),"
                    + " set_config('idle_in_transaction_session_timeout', ?, true)")) {
                ps.setString(1, timeout.toMillis() + "ms");
                ps.setString(2, lockTimeout.toMillis() + "ms");
                ps.setString(3, IDLE_IN_TRANSACTION_TIMEOUT.toMillis() + "ms");
                ps.executeQuery().close();
            }
            T result = work.run();
            conn.commit();
            return result;
        } catch (SQLException | RuntimeException e) {
            rollbackQuietly(conn);
            throw e;
        } finally {
            try {
                conn.setAutoCommit(true);
            } catch (SQLException ignored) {
                // A broken connection reports its own failure above.
            }
        }
    }

    /**
     * Retries work that failed for a transient reason (lock or statement timeout, serialization
     * failure, deadlock) with backoff; each attempt is a whole transaction, so a failed one left
     * nothing behind. Anything else fails the step at once.
     */
    <T> T withRetries(String step, SqlWork<T> work) throws SQLException {
        Duration backoff = Duration.ofMillis(500);
        for (int attempt = 1; ; attempt++) {
            try {
                return work.run();
            } catch (SQLException e) {
                String state = e.getSQLState() == null ? "" : e.getSQLState();
                boolean transient_ = Set.of("40001", "40P01", "55P03", "57014").contains(state);
                if (!transient_ || attempt > TRANSIENT_RETRIES || stop.requested()) {
                    throw new StepFailure(step + " failed: " + firstLine(e.getMessage()) + " (SQLState "
                            + state + "); committed work is recorded and re-running the same command is safe", e);
                }
                out.warn("%s hit %s (SQLState %s); retrying in %s (attempt %d/%d)", step,
                        firstLine(e.getMessage()), state, GoDurationConverter.format(backoff), attempt,
                        TRANSIENT_RETRIES);
                sleepQuietly(backoff);
                backoff = backoff.multipliedBy(2);
            }
        }
    }

    static void rollbackQuietly(Connection conn) {
        try {
            if (!conn.isClosed()) {
                conn.rollback();
            }
        } catch (SQLException ignored) {
            // The transaction is gone with the connection; nothing to undo.
        }
    }

    interface RowReader<T> {
        T read(ResultSet rs) throws SQLException;
    }

    static <T> T queryOne(Connection conn, String sql, RowReader<T> reader, Object... params) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return reader.read(rs);
            }
        }
    }

    // ---------------------------------------------------------------- parsing helpers

    static String formatInstant(OffsetDateTime time) {
        return time == null ? "-" : formatInstant(time.toInstant());
    }

    static String formatInstant(Instant time) {
        return DateTimeFormatter.ISO_INSTANT.format(time);
    }

    static double percent(long part, long whole) {
        return whole == 0 ? 100.0 : 100.0 * part / whole;
    }

    static String elapsedSince(long startNanos) {
        return GoDurationConverter.format(Duration.ofMillis((System.nanoTime() - startNanos) / 1_000_000));
    }

    static String firstLine(String text) {
        if (text == null) {
            return "";
        }
        int newline = text.indexOf('\n');
        return newline < 0 ? text : text.substring(0, newline);
    }

    static void sleepQuietly(Duration duration) {
        try {
            Thread.sleep(duration.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** RFC 3339 with a mandatory offset, normalized to UTC; PostgreSQL keeps microseconds. */
    static final class CutoffConverter implements CommandLine.ITypeConverter<OffsetDateTime> {
        static final Pattern SHAPE = Pattern.compile(
                "\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?([Zz]|[+-]\\d{2}:\\d{2})");

        @Override
        public OffsetDateTime convert(String value) {
            return parseCutoff(value);
        }

        static OffsetDateTime parseCutoff(String value) {
            String text = value.trim();
            if (!SHAPE.matcher(text).matches()) {
                if (text.matches("\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?")) {
                    throw new TypeConversionException("'" + value + "' has no UTC offset; add Z or "
                            + "+HH:MM (RFC 3339), e.g. 2026-06-13T08:00:00Z");
                }
                throw new TypeConversionException("'" + value + "' is not an RFC 3339 time with an "
                        + "offset, e.g. 2026-06-13T08:00:00Z or 2026-06-13T16:00:00+08:00");
            }
            String normalized = text.replace(' ', 'T').replace('t', 'T').replace('z', 'Z');
            OffsetDateTime parsed;
            try {
                parsed = OffsetDateTime.parse(normalized, DateTimeFormatter.ISO_OFFSET_DATE_TIME);
            } catch (DateTimeParseException e) {
                throw new TypeConversionException("'" + value + "' is not a valid date and time ("
                        + e.getMessage().replaceFirst("^Text '.*?' could not be parsed: ", "") + ")");
            }
            if (parsed.getNano() % 1000 != 0) {
                throw new TypeConversionException("'" + value + "' is more precise than PostgreSQL's "
                        + "microseconds; give at most 6 fractional digits");
            }
            return parsed.withOffsetSameInstant(ZoneOffset.UTC);
        }
    }

    static final class WorkspaceIdConverter implements CommandLine.ITypeConverter<UUID> {
        static final Pattern UUID_SHAPE = Pattern.compile(
                "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}");

        @Override
        public UUID convert(String value) {
            if (!UUID_SHAPE.matcher(value.trim()).matches()) {
                throw new TypeConversionException("'" + value + "' is not a workspace UUID "
                        + "(8-4-4-4-12 hex digits, e.g. 3f2c1a9e-0b7d-4c1e-9a51-2d6f8e4b7c10)");
            }
            return UUID.fromString(value.trim());
        }
    }

    /** Go's time.ParseDuration syntax: 500ms, 1s, 1m30s, 1.5h, 0; units ns us µs ms s m h. */
    static final class GoDurationConverter implements CommandLine.ITypeConverter<Duration> {
        static final Pattern TERM = Pattern.compile("(\\d+\\.?\\d*|\\.\\d+)(ns|us|µs|μs|ms|s|m|h)");
        static final Map<String, Long> UNIT_NANOS = Map.of("ns", 1L, "us", 1_000L, "µs", 1_000L,
                "μs", 1_000L, "ms", 1_000_000L, "s", 1_000_000_000L, "m", 60_000_000_000L,
                "h", 3_600_000_000_000L);

        @Override
        public Duration convert(String value) {
            return parse(value);
        }

        static Duration parse(String value) {
            String text = value.trim();
            boolean negative = text.startsWith("-");
            if (negative || text.startsWith("+")) {
                text = text.substring(1);
            }
            if (text.equals("0")) {
                return Duration.ZERO;
            }
            Matcher m = TERM.matcher(text);
            int at = 0;
            java.math.BigDecimal nanos = java.math.BigDecimal.ZERO;
            while (at < text.length() && m.find(at) && m.start() == at) {
                nanos = nanos.add(new java.math.BigDecimal(m.group(1))
                        .multiply(java.math.BigDecimal.valueOf(UNIT_NANOS.get(m.group(2)))));
                at = m.end();
            }
            if (text.isEmpty() || at != text.length()) {
                throw new TypeConversionException("'" + value + "' is not a duration; use a number "
                        + "with a unit, e.g. 500ms, 1s, 1m30s (units: ns, us, ms, s, m, h)");
            }
            try {
                Duration d = Duration.ofNanos(nanos.setScale(0, java.math.RoundingMode.DOWN).longValueExact());
                return negative ? d.negated() : d;
            } catch (ArithmeticException e) {
                throw new TypeConversionException("'" + value + "' is too large a duration");
            }
        }

        static String format(Duration d) {
            if (d.isZero()) {
                return "0s";
            }
            StringBuilder sb = new StringBuilder(d.isNegative() ? "-" : "");
            Duration abs = d.abs();
            if (abs.compareTo(Duration.ofSeconds(1)) < 0) {
                return abs.toMillis() > 0 ? sb.append(abs.toMillis()).append("ms").toString()
                        : sb.append(abs.toNanos() / 1000).append("us").toString();
            }
            if (abs.toHours() > 0) {
                sb.append(abs.toHours()).append('h');
            }
            if (abs.toMinutesPart() > 0) {
                sb.append(abs.toMinutesPart()).append('m');
            }
            if (abs.toSecondsPart() > 0 || abs.toMillisPart() > 0) {
                sb.append(abs.toSecondsPart());
                if (abs.toMillisPart() > 0) {
                    sb.append(String.format(Locale.ROOT, ".%03d", abs.toMillisPart()).replaceAll("0+$", ""));
                }
                sb.append('s');
            }
            return sb.toString();
        }
    }

    // ---------------------------------------------------------------- database target

    /**
     * Where to connect: a pgjdbc URL plus properties, a display form without secrets, the secrets
     * themselves (for redaction) and notes about ignored settings.
     */
    record DatabaseTarget(String jdbcUrl, Properties properties, String display, List<String> secrets,
                          List<String> notes) {

        static final Set<String> PG_ENV = Set.of("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER",
                "PGPASSWORD", "PGSSLMODE", "PGAPPNAME", "PGCONNECT_TIMEOUT", "PGOPTIONS", "PGSSLROOTCERT",
                "PGSSLCERT", "PGSSLKEY", "PGTARGETSESSIONATTRS");

        /** libpq keywords passed on unchanged under their pgjdbc name (others are mapped in fromKeywords). */
        static final Map<String, String> LIBPQ_TO_PGJDBC = Map.ofEntries(
                Map.entry("user", "user"), Map.entry("password", "password"),
                Map.entry("application_name", "ApplicationName"), Map.entry("options", "options"),
                Map.entry("sslrootcert", "sslrootcert"), Map.entry("sslcert", "sslcert"),
                Map.entry("sslkey", "sslkey"), Map.entry("sslpassword", "sslpassword"),
                Map.entry("gssencmode", "gssEncMode"), Map.entry("channel_binding", "channelBinding"),
                Map.entry("search_path", "currentSchema"));

        static final Set<String> SSL_MODES = Set.of("disable", "allow", "prefer", "require", "verify-ca",
                "verify-full");

        static DatabaseTarget resolve(String flagUrl, Map<String, String> env) {
            if (flagUrl != null) {
                return parse(flagUrl, "--database-url");
            }
            String fromEnv = env.get("DATABASE_URL");
            if (fromEnv != null && !fromEnv.isBlank()) {
                return parse(fromEnv, "DATABASE_URL");
            }
            if (PG_ENV.stream().anyMatch(name -> env.get(name) != null && !env.get(name).isBlank())) {
                return fromPgEnvironment(env);
            }
            throw new UsageError("no database given: pass --database-url, set DATABASE_URL "
                    + (fromEnv != null ? "(it is empty) " : "")
                    + "or set PGHOST/PGDATABASE/PGUSER (with PGPASSWORD or ~/.pgpass)");
        }

        static DatabaseTarget parse(String url, String source) {
            String trimmed = url.trim();
            String lower = trimmed.toLowerCase(Locale.ROOT);
            try {
                if (lower.startsWith("jdbc:postgresql:")) {
                    return fromJdbc(trimmed, source);
                }
                if (lower.startsWith("postgres://") || lower.startsWith("postgresql://")) {
                    return fromLibpqUri(trimmed, source);
                }
            } catch (UsageError e) {
                // A malformed URL may be split in the wrong place, so any fragment echoed in the
                // message could hold (part of) the password: mask what could be the userinfo.
                String message = e.getMessage();
                for (String candidate : possibleSecrets(trimmed)) {
                    message = message.replace(candidate, "****");
                }
                throw new UsageError(message);
            }
            throw new UsageError(source + " must start with postgres://, postgresql:// or jdbc:postgresql:"
                    + (trimmed.contains("=") && !trimmed.contains("://")
                            ? " (libpq key=value strings are not supported; write it as a URL)" : ""));
        }

        /** Everything between the scheme and the last '@', with and without decoding, and its pieces. */
        static List<String> possibleSecrets(String url) {
            int scheme = url.indexOf("://");
            int at = url.lastIndexOf('@');
            List<String> candidates = new ArrayList<>();
            if (scheme >= 0 && at > scheme) {
                String userinfo = url.substring(scheme + 3, at);
                int colon = userinfo.indexOf(':');
                String password = colon >= 0 ? userinfo.substring(colon + 1) : "";
                for (String piece : password.split("[/?#&=@:]")) {
                    if (piece.length() >= Reporter.MIN_SECRET_LENGTH) {
                        candidates.add(piece);
                    }
                }
                candidates.add(0, password);
                try {
                    candidates.add(0, java.net.URLDecoder.decode(password.replace("+", "%2B"), StandardCharsets.UTF_8));
                } catch (IllegalArgumentException malformed) {
                    // Only the raw form can appear then.
                }
            }
            candidates.removeIf(c -> c.length() < Reporter.MIN_SECRET_LENGTH);
            candidates.sort((a, b) -> b.length() - a.length());
            return candidates;
        }

        static DatabaseTarget fromJdbc(String url, String source) {
            String afterScheme = url.substring("jdbc:postgresql:".length());
            String authority = afterScheme.startsWith("//") ? afterScheme.substring(2).split("[/?]", 2)[0] : "";
            if (authority.contains("@")) {
                throw new UsageError(source + ": a jdbc:postgresql: URL does not take user:password@host; "
                        + "use ?user=...&password=... or a postgres:// URL");
            }
            Properties parsed = org.postgresql.Driver.parseURL(url, new Properties());
            if (parsed == null) {
                throw new UsageError(source + " is not a valid jdbc:postgresql: URL (see pgjdbc's URL format)");
            }
            List<String> secrets = new ArrayList<>();
            String password = parsed.getProperty("password");
            if (password != null && !password.isEmpty()) {
                secrets.add(password);
            }
            Properties props = new Properties();
            applyDefaults(props);
            String display = display(parsed.getProperty("user"), parsed.getProperty("PGHOST"),
                    parsed.getProperty("PGPORT"), parsed.getProperty("PGDBNAME"), parsed.getProperty("sslmode"));
            return new DatabaseTarget(url, props, display, secrets, List.of());
        }

        static DatabaseTarget fromLibpqUri(String uri, String source) {
            String rest = uri.substring(uri.indexOf("://") + 3);
            int hash = rest.indexOf('#');
            if (hash >= 0) {
                rest = rest.substring(0, hash);
            }
            String query = "";
            int q = rest.indexOf('?');
            if (q >= 0) {
                query = rest.substring(q + 1);
                rest = rest.substring(0, q);
            }
            int slash = rest.indexOf('/');
            String authority = slash >= 0 ? rest.substring(0, slash) : rest;
            String path = slash >= 0 ? rest.substring(slash + 1) : "";
            Map<String, String> keywords = new LinkedHashMap<>();
            int at = authority.lastIndexOf('@');
            if (at >= 0) {
                String userinfo = authority.substring(0, at);
                authority = authority.substring(at + 1);
                int colon = userinfo.indexOf(':');
                String user = percentDecode(colon >= 0 ? userinfo.substring(0, colon) : userinfo, source, "user");
                if (!user.isEmpty()) {
                    keywords.put("user", user);
                }
                if (colon >= 0) {
                    keywords.put("password", percentDecode(userinfo.substring(colon + 1), source, "password"));
                }
            }
            if (!authority.isEmpty()) {
                keywords.put("host", authority);
            }
            if (!path.isEmpty()) {
                keywords.put("dbname", percentDecode(path, source, "database name"));
            }
            if (!query.isEmpty()) {
                for (String pair : query.split("&")) {
                    if (pair.isEmpty()) {
                        continue;
                    }
                    int eq = pair.indexOf('=');
                    if (eq <= 0) {
                        throw new UsageError(source + ": query parameter '" + safeKey(pair)
                                + "' has no value; write key=value");
                    }
                    String key = percentDecode(pair.substring(0, eq), source, "parameter name");
                    keywords.put(key, percentDecode(pair.substring(eq + 1), source, "parameter " + safeKey(key)));
                }
            }
            return fromKeywords(keywords, source);
        }

        static DatabaseTarget fromPgEnvironment(Map<String, String> env) {
            Map<String, String> keywords = new LinkedHashMap<>();
            String[][] mapping = {{"PGHOST", "host"}, {"PGPORT", "port"}, {"PGDATABASE", "dbname"},
                {"PGUSER", "user"}, {"PGPASSWORD", "password"}, {"PGSSLMODE", "sslmode"},
                {"PGAPPNAME", "application_name"}, {"PGCONNECT_TIMEOUT", "connect_timeout"},
                {"PGOPTIONS", "options"}, {"PGSSLROOTCERT", "sslrootcert"}, {"PGSSLCERT", "sslcert"},
                {"PGSSLKEY", "sslkey"}, {"PGTARGETSESSIONATTRS", "target_session_attrs"}};
            for (String[] m : mapping) {
                String value = env.get(m[0]);
                if (value != null && !value.isEmpty()) {
                    keywords.put(m[1], value);
                }
            }
            String hostaddr = env.get("PGHOSTADDR");
            if (hostaddr != null && !hostaddr.isEmpty() && !keywords.containsKey("host")) {
                keywords.put("host", hostaddr);
            }
            if (keywords.getOrDefault("host", "").startsWith("/")) {
                throw new UsageError("PGHOST names a Unix socket directory; this tool connects over "
                        + "TCP: set PGHOST to a host name such as localhost");
            }
            String dbname = keywords.getOrDefault("dbname", "");
            if (dbname.contains("://") || dbname.contains("=")) {
                throw new UsageError("PGDATABASE holds a connection string; put it in DATABASE_URL instead");
            }
            return fromKeywords(keywords, "the PG* environment variables");
        }

        /** Maps libpq keywords to a pgjdbc URL and properties; unknown keys are refused. */
        static DatabaseTarget fromKeywords(Map<String, String> keywords, String source) {
            Properties props = new Properties();
            List<String> notes = new ArrayList<>();
            List<String> secrets = new ArrayList<>();
            String hosts = keywords.getOrDefault("host", "localhost");
            String port = keywords.get("port");
            String dbname = keywords.get("dbname");
            for (Map.Entry<String, String> e : keywords.entrySet()) {
                String key = e.getKey();
                String value = e.getValue();
                switch (key) {
                    case "host", "port", "dbname" -> { }
                    case "sslmode" -> {
                        if (!SSL_MODES.contains(value)) {
                            throw new UsageError(source + ": sslmode '" + value + "' is not one of "
                                    + String.join(", ", new java.util.TreeSet<>(SSL_MODES)));
                        }
                        props.setProperty("sslmode", value);
                    }
                    case "ssl" -> props.setProperty("sslmode", "true".equals(value) ? "require" : "disable");
                    case "connect_timeout" -> {
                        if (!value.matches("\\d{1,6}")) {
                            throw new UsageError(source + ": connect_timeout '" + value
                                    + "' must be a whole number of seconds");
                        }
                        props.setProperty("connectTimeout", value);
                    }
                    case "target_session_attrs" -> props.setProperty("targetServerType", switch (value) {
                        case "any" -> "any";
                        case "read-write", "primary" -> "primary";
                        case "read-only", "standby" -> "secondary";
                        case "prefer-standby" -> "preferSecondary";
                        default -> throw new UsageError(source + ": target_session_attrs '" + value
                                + "' is not supported (any, read-write, read-only, primary, standby, prefer-standby)");
                    });
                    case "keepalives" -> props.setProperty("tcpKeepAlive", "0".equals(value) ? "false" : "true");
                    default -> {
                        if (key.startsWith("pool_")) {
                            notes.add("ignoring connection pool parameter '" + key + "' from " + source
                                    + " (this tool uses a single connection)");
                        } else if (LIBPQ_TO_PGJDBC.containsKey(key)) {
                            props.setProperty(LIBPQ_TO_PGJDBC.get(key), value);
                        } else {
                            throw new UsageError(source + ": unknown parameter '" + safeKey(key)
                                    + "'; remove it (supported: host, port, dbname, user, password, sslmode, "
                                    + "application_name, connect_timeout, options, sslrootcert, sslcert, sslkey, "
                                    + "sslpassword, target_session_attrs, keepalives, gssencmode, channel_binding, "
                                    + "search_path; pool_* are ignored)");
                        }
                    }
                }
            }
            if (keywords.containsKey("password") && !keywords.get("password").isEmpty()) {
                secrets.add(keywords.get("password"));
                secrets.add(java.net.URLEncoder.encode(keywords.get("password"), StandardCharsets.UTF_8));
            }
            String[] hostNames = hosts.split(",");
            String[] ports = port == null ? new String[] {null} : port.split(",");
            if (ports.length != 1 && ports.length != hostNames.length) {
                throw new UsageError(source + ": give one port, or one port per host (" + hostNames.length
                        + " hosts, " + ports.length + " ports)");
            }
            List<String> hostList = new ArrayList<>();
            for (int i = 0; i < hostNames.length; i++) {
                hostList.add(hostWithPort(hostNames[i].trim(), ports[ports.length == 1 ? 0 : i], source));
            }
            String url = "jdbc:postgresql://" + String.join(",", hostList) + "/"
                    + (dbname == null ? "" : org.postgresql.util.URLCoder.encode(dbname));
            applyDefaults(props);
            String display = display(props.getProperty("user"), String.join(",", hostList), null, dbname,
                    props.getProperty("sslmode"));
            return new DatabaseTarget(url, props, display, secrets, notes);
        }

        static String hostWithPort(String host, String port, String source) {
            String name = host;
            String hostPort = port;
            if (host.startsWith("[")) {
                int close = host.indexOf(']');
                if (close < 0) {
                    throw new UsageError(source + ": unterminated IPv6 address '" + safeKey(host) + "'");
                }
                name = host.substring(0, close + 1);
                if (host.length() > close + 1 && host.charAt(close + 1) == ':') {
                    hostPort = host.substring(close + 2);
                }
            } else if (host.indexOf(':') != host.lastIndexOf(':')) {
                name = "[" + host + "]"; // a bare IPv6 address, as libpq's host= takes it
            } else if (host.indexOf(':') >= 0) {
                name = host.substring(0, host.indexOf(':'));
                hostPort = host.substring(host.indexOf(':') + 1);
            }
            if (name.isEmpty()) {
                name = "localhost";
            }
            if (hostPort == null || hostPort.isEmpty()) {
                hostPort = "5432";
            }
            if (!hostPort.matches("\\d{1,5}") || Integer.parseInt(hostPort) < 1 || Integer.parseInt(hostPort) > 65535) {
                throw new UsageError(source + ": port '" + safeKey(hostPort) + "' is not a number between 1 and 65535");
            }
            if (!name.matches("\\[[0-9A-Fa-f:.]+]|[A-Za-z0-9._-]+")) {
                throw new UsageError(source + ": host '" + safeKey(name) + "' is not a valid host name");
            }
            return name + ":" + hostPort;
        }

        static void applyDefaults(Properties props) {
            props.putIfAbsent("ApplicationName", NAME);
            // Unnamed statements only: named server-side statements break behind PgBouncer's
            // transaction pooling, and re-planning one batch statement costs nothing next to it.
            props.putIfAbsent("prepareThreshold", "0");
            props.putIfAbsent("tcpKeepAlive", "true");
        }

        static String display(String user, String hosts, String port, String db, String sslmode) {
            String host = hosts == null ? "localhost" : hosts;
            return "postgres://" + (user == null ? "" : user + "@") + host + (port == null ? "" : ":" + port)
                    + "/" + (db == null ? "" : db) + (sslmode == null ? "" : "?sslmode=" + sslmode);
        }

        static String safeKey(String key) {
            String shown = key.length() > 40 ? key.substring(0, 40) + "..." : key;
            return shown.replaceAll("\\p{Cntrl}", "?");
        }

        /** libpq-style decoding: only %XX escapes, '+' stays '+', and %00 is refused. */
        static String percentDecode(String text, String source, String what) {
            java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
            for (int i = 0; i < text.length(); i++) {
                char c = text.charAt(i);
                if (c == '%') {
                    if (i + 2 >= text.length()) {
                        throw new UsageError(source + ": the " + what + " has an incomplete %-escape; "
                                + "percent-encode '%' as %25");
                    }
                    int hi = Character.digit(text.charAt(i + 1), 16);
                    int lo = Character.digit(text.charAt(i + 2), 16);
                    if (hi < 0 || lo < 0) {
                        throw new UsageError(source + ": the " + what + " has an invalid %-escape; "
                                + "percent-encode '%' as %25");
                    }
                    if (hi == 0 && lo == 0) {
                        throw new UsageError(source + ": the " + what + " contains %00, which is not allowed");
                    }
                    bytes.write(hi * 16 + lo);
                    i += 2;
                } else {
                    byte[] encoded = String.valueOf(c).getBytes(StandardCharsets.UTF_8);
                    bytes.write(encoded, 0, encoded.length);
                }
            }
            return bytes.toString(StandardCharsets.UTF_8);
        }

        Connection connect() throws SQLException {
            try {
                return DriverManager.getConnection(jdbcUrl, properties);
            } catch (SQLException e) {
                throw new StepFailure("cannot connect to " + display + ": " + firstLine(e.getMessage()), e);
            }
        }
    }

    // ---------------------------------------------------------------- output

    enum SummaryFormat {
        table, csv, json;

        static String render(SummaryFormat format, List<SummaryRow> rows, Totals totals,
                             OffsetDateTime cutoff, UUID workspaceId) throws IOException {
            return switch (format) {
                case table -> renderTable(rows, totals);
                case csv -> renderCsv(rows);
                case json -> renderJson(rows, totals, cutoff, workspaceId);
            };
        }

        static Table toTable(List<SummaryRow> rows, Totals totals) {
            StringColumn workspace = StringColumn.create("workspace_id");
            DateColumn date = DateColumn.create("date_utc");
            LongColumn count = LongColumn.create("rows");
            LongColumn before = LongColumn.create("input_before");
            LongColumn after = LongColumn.create("input_after");
            LongColumn removed = LongColumn.create("input_tokens_removed");
            LongColumn clamped = LongColumn.create("clamped_rows");
            StringColumn first = StringColumn.create("first_created_at");
            StringColumn last = StringColumn.create("last_created_at");
            for (SummaryRow r : rows) {
                workspace.append(r.workspaceId());
                date.append(r.dateUtc());
                count.append(r.rows());
                before.append(r.inputBefore());
                after.append(r.inputAfter());
                removed.append(r.inputTokensRemoved());
                clamped.append(r.clampedRows());
                first.append(formatTimestamp(r.firstCreatedAt()));
                last.append(formatTimestamp(r.lastCreatedAt()));
            }
            if (totals != null) {
                workspace.append("TOTAL");
                date.appendMissing();
                count.append(totals.rows());
                before.append(totals.inputBefore());
                after.append(totals.inputAfter());
                removed.append(totals.inputTokensRemoved());
                clamped.append(totals.clampedRows());
                first.append(formatTimestamp(totals.firstCreatedAt()));
                last.append(formatTimestamp(totals.lastCreatedAt()));
            }
            return Table.create("Codex usage rows to correct (UTC dates of created_at)", workspace, date,
                    count, before, after, removed, clamped, first, last);
        }

        static String renderTable(List<SummaryRow> rows, Totals totals) {
            return toTable(rows, totals).printAll() + System.lineSeparator();
        }

        static String renderCsv(List<SummaryRow> rows) throws IOException {
            StringWriter writer = new StringWriter();
            toTable(rows, null).write().csv(writer);
            return writer.toString();
        }

        static String renderJson(List<SummaryRow> rows, Totals totals, OffsetDateTime cutoff, UUID workspaceId)
                throws IOException {
            Map<String, Object> doc = new LinkedHashMap<>();
            doc.put("cutoff", formatInstant(cutoff));
            doc.put("workspace_id", workspaceId == null ? null : workspaceId.toString());
            List<Map<String, Object>> groups = new ArrayList<>();
            for (SummaryRow r : rows) {
                Map<String, Object> g = new LinkedHashMap<>();
                g.put("workspace_id", r.workspaceId());
                g.put("date_utc", r.dateUtc().toString());
                putCounts(g, r.rows(), r.inputBefore(), r.inputAfter(), r.inputTokensRemoved(), r.clampedRows(),
                        r.firstCreatedAt(), r.lastCreatedAt());
                groups.add(g);
            }
            doc.put("groups", groups);
            Map<String, Object> t = new LinkedHashMap<>();
            putCounts(t, totals.rows(), totals.inputBefore(), totals.inputAfter(), totals.inputTokensRemoved(),
                    totals.clampedRows(), totals.firstCreatedAt(), totals.lastCreatedAt());
            doc.put("totals", t);
            return new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(doc)
                    + System.lineSeparator();
        }

        static void putCounts(Map<String, Object> m, long rows, long before, long after, long removed, long clamped,
                              OffsetDateTime first, OffsetDateTime last) {
            m.put("rows", rows);
            m.put("input_before", before);
            m.put("input_after", after);
            m.put("input_tokens_removed", removed);
            m.put("clamped_rows", clamped);
            m.put("first_created_at", first == null ? null : formatTimestamp(first));
            m.put("last_created_at", last == null ? null : formatTimestamp(last));
        }

        static String formatTimestamp(OffsetDateTime t) {
            return t == null ? "" : DateTimeFormatter.ISO_INSTANT.format(t.toInstant());
        }
    }

    /** Narration on stderr, one event per line, with secrets masked. */
    static final class Reporter {
        static final String ERROR_PREFIX = "Error: ";
        final PrintWriter err;
        final List<String> secrets = new ArrayList<>();

        Reporter(PrintWriter err) {
            this.err = err;
        }

        /** Secrets shorter than this are not masked: replacing "2" would garble every number. */
        static final int MIN_SECRET_LENGTH = 4;

        void addSecrets(List<String> values) {
            values.stream().filter(s -> s != null && s.length() >= MIN_SECRET_LENGTH).forEach(secrets::add);
        }

        /** Control characters (newlines, escapes) from echoed values cannot forge extra lines. */
        static String oneLine(String text) {
            return text.replaceAll("\\p{Cntrl}", "?");
        }

        String redact(String text) {
            String result = text;
            for (String secret : secrets) {
                result = result.replace(secret, "****");
            }
            return result;
        }

        void info(String format, Object... args) {
            log("INFO", format, args);
        }

        void warn(String format, Object... args) {
            log("WARN", format, args);
        }

        synchronized void log(String level, String format, Object... args) {
            String message = args.length == 0 ? format : String.format(Locale.ROOT, format, args);
            err.println(formatInstant(Instant.now().truncatedTo(ChronoUnit.SECONDS)) + " " + level + " "
                    + redact(oneLine(message)));
            err.flush();
        }
    }

    /**
     * SIGTERM/SIGINT: before the first batch the run exits at once (nothing of task_usage was
     * written); during the batches it stops after the current one; a second signal aborts.
     */
    static final class StopSignal {
        private final CountDownLatch latch = new CountDownLatch(1);
        private volatile String signalName;
        private volatile boolean writing;

        void enterWritePhase() {
            writing = true;
        }

        void install(Reporter out) {
            for (String name : List.of("TERM", "INT")) {
                onSignal(name, () -> {
                    if (!writing) {
                        out.warn("SIG%s received before any row was written: exiting", name);
                        Runtime.getRuntime().halt(ExitCode.SOFTWARE);
                    }
                    if (signalName != null) {
                        out.warn("second SIG%s: aborting now; the open batch rolls back and a re-run "
                                + "is safe", name);
                        Runtime.getRuntime().halt(ExitCode.SOFTWARE);
                    }
                    signalName = "SIG" + name;
                    out.warn("%s received: stopping after the current batch (send it again to abort "
                            + "at once)", signalName);
                    latch.countDown();
                });
            }
        }

        /**
         * Installs a handler through sun.misc.Signal (module jdk.unsupported), reached by
         * reflection so that compiling the script prints no proprietary-API warnings. Where the
         * signal cannot be handled (reserved by the JVM, or ignored since launch) the default stays.
         */
        static void onSignal(String name, Runnable action) {
            try {
                Class<?> signalClass = Class.forName("sun.misc.Signal");
                Class<?> handlerClass = Class.forName("sun.misc.SignalHandler");
                Object handler = java.lang.reflect.Proxy.newProxyInstance(handlerClass.getClassLoader(),
                        new Class<?>[] {handlerClass}, (proxy, method, args) -> switch (method.getName()) {
                            case "handle" -> {
                                action.run();
                                yield null;
                            }
                            case "hashCode" -> System.identityHashCode(proxy);
                            case "equals" -> proxy == args[0];
                            default -> "signal handler for SIG" + name;
                        });
                signalClass.getMethod("handle", signalClass, handlerClass)
                        .invoke(null, signalClass.getConstructor(String.class).newInstance(name), handler);
            } catch (ReflectiveOperationException | RuntimeException e) {
                // No handler: the JVM's default applies (exit at once; a re-run is safe).
            }
        }

        boolean requested() {
            return latch.getCount() == 0;
        }

        String signalName() {
            return signalName;
        }

        /** Sleeps unless a stop is requested first; returns false when it was. */
        boolean sleep(Duration duration) {
            try {
                return !latch.await(duration.toNanos(), TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }
    }

    // ---------------------------------------------------------------- small types

    /** A failed step, reported as one line (exit 1). */
    static final class StepFailure extends RuntimeException {
        StepFailure(String message) {
            super(message);
        }

        StepFailure(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** Bad input found outside picocli's parser (database URL); reported like a flag error (exit 2). */
    static final class UsageError extends RuntimeException {
        UsageError(String message) {
            super(message);
        }
    }

    record SummaryRow(String workspaceId, LocalDate dateUtc, long rows, long inputBefore, long inputAfter,
                      long inputTokensRemoved, long clampedRows, OffsetDateTime firstCreatedAt,
                      OffsetDateTime lastCreatedAt) {
    }

    record Totals(long rows, long inputBefore, long inputAfter, long inputTokensRemoved, long clampedRows,
                  OffsetDateTime firstCreatedAt, OffsetDateTime lastCreatedAt) {
        static Totals of(List<SummaryRow> rows) {
            long count = 0, before = 0, after = 0, removed = 0, clamped = 0;
            OffsetDateTime first = null, last = null;
            for (SummaryRow r : rows) {
                count += r.rows();
                before += r.inputBefore();
                after += r.inputAfter();
                removed += r.inputTokensRemoved();
                clamped += r.clampedRows();
                first = first == null || r.firstCreatedAt().isBefore(first) ? r.firstCreatedAt() : first;
                last = last == null || r.lastCreatedAt().isAfter(last) ? r.lastCreatedAt() : last;
            }
            return new Totals(count, before, after, removed, clamped, first, last);
        }
    }

    record BatchResult(long rows, long inputTokensRemoved, long clampedRows, long skippedChanged, List<UUID> locked) {
    }

    record RunRecord(long runId, String status, long rowsUpdated, OffsetDateTime windowFrom,
                     OffsetDateTime windowTo, OffsetDateTime rolledUpTo) {
        static final String COLUMNS = "run_id, status, rows_updated, window_from, window_to, rolled_up_to";

        static RunRecord read(ResultSet rs) throws SQLException {
            return new RunRecord(rs.getLong(1), rs.getString(2), rs.getLong(3),
                    rs.getObject(4, OffsetDateTime.class), rs.getObject(5, OffsetDateTime.class),
                    rs.getObject(6, OffsetDateTime.class));
        }
    }

    /** Splits a rollup window into consecutive slices of about {@code sliceRows} updated rows each. */
    static final class RollupWindow {
        static List<OffsetDateTime[]> slices(OffsetDateTime from, OffsetDateTime to, long rows, long sliceRows) {
            long count = sliceRows <= 0 ? 1 : Math.max(1, (rows + sliceRows - 1) / sliceRows);
            long micros = ChronoUnit.MICROS.between(from, to);
            count = Math.max(1, Math.min(count, micros));
            List<OffsetDateTime[]> slices = new ArrayList<>();
            OffsetDateTime start = from;
            for (long i = 1; i <= count; i++) {
                OffsetDateTime end = i == count ? to : from.plus(micros * i / count, ChronoUnit.MICROS);
                slices.add(new OffsetDateTime[] {start, end});
                start = end;
            }
            return slices;
        }
    }
}
