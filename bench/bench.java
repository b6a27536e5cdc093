///usr/bin/env jbang "$0" "$@" ; exit $?
//JAVA 17+
//SOURCES ../tests/TestDatabase.java
//DESCRIPTION Benchmark of backfill_codex_usage_cache --execute against the floor (one UPDATE + one
//DESCRIPTION rollup call) and the naive ORDER BY ... LIMIT re-query loop, on realistic sample data.
//DESCRIPTION Usage (from the repository root, normally through bench/run.sh):
//DESCRIPTION   bench.java [--smoke] [--naive-cap-seconds N] [--workspaces N] [ROWS ...]

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Measures the tool's {@code --execute} against two reference points on identical copies of one
 * generated database per size:
 *
 * <ul>
 *   <li>floor: a single UPDATE of every eligible row, ANALYZE, one rollup call over the window;
 *   <li>naive: the per-batch {@code ORDER BY ... LIMIT 1000 FOR UPDATE SKIP LOCKED} re-query loop,
 *       then the same ANALYZE and single rollup call;
 *   <li>tool: the real tool in its own JVM with a capped heap, peak RSS measured;
 *   <li>scoped: the tool with {@code --workspace-id} on the workspace holding about 2% of rows.
 * </ul>
 *
 * Every result is checked against the expected table computed independently from the template
 * (a fingerprint over {@code id, input_tokens}), for 0 eligible rows left, and for
 * {@code task_usage_hourly} equal to a fresh aggregation. A failed check makes the exit code 1.
 */
public class bench {

    static final int BATCH_SIZE = 1000;
    static final int WORKSPACES_DEFAULT = 50;
    static final double SCOPED_SHARE = 0.02;
    static final String TOOL_MAIN = "backfill_codex_usage_cache";

    static final String ELIGIBLE = "tu.provider = 'codex' AND tu.cache_read_tokens > 0"
            + " AND tu.input_tokens > 0 AND COALESCE(tu.updated_at, tu.created_at) < ?";
    static final String CORRECTED = "GREATEST(tu.input_tokens - tu.cache_read_tokens, 0)";
    static final String IN_WORKSPACE = "tu.task_id IN (SELECT q.id FROM agent_task_queue q"
            + " JOIN agent a ON a.id = q.agent_id WHERE a.workspace_id = ?)";

    // Settings (from the command line).
    static boolean smoke;
    static long naiveCapSeconds = 600;
    static int workspaces = WORKSPACES_DEFAULT;
    static List<String> toolJvmOptions = List.of("-Xmx256m", "-XX:+UseSerialGC");
    static List<String> toolExtraArgs = List.of();
    static boolean skipNaive;
    static boolean explainBatches;

    static TestDatabase pg;
    static String controlDb;
    static Path logDir;
    static final List<String> failures = new ArrayList<>();

    public static void main(String... args) throws Exception {
        List<Integer> sizes = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--smoke" -> smoke = true;
                case "--naive-cap-seconds" -> naiveCapSeconds = Long.parseLong(args[++i]);
                case "--workspaces" -> workspaces = Integer.parseInt(args[++i]);
                case "--tool-jvm-options" -> toolJvmOptions = List.of(args[++i].trim().split("\\s+"));
                case "--tool-args" -> toolExtraArgs = List.of(args[++i].trim().split("\\s+"));
                case "--skip-naive" -> skipNaive = true;
                case "--explain-batches" -> explainBatches = true;
                default -> sizes.add(Integer.parseInt(args[i].replace("_", "")));
            }
        }
        if (sizes.isEmpty()) {
            sizes = smoke ? List.of(20_000) : List.of(250_000, 1_000_000, 4_000_000);
        }
        String classpath = toolClasspath();
        logDir = Path.of("bench", "logs").toAbsolutePath();
        Files.createDirectories(logDir);

        long benchStart = System.nanoTime();
        pg = TestDatabase.shared();
        controlDb = pg.createEmptyDatabase("bench_ctl");
        say("machine: %d cores, %s RAM, %s; tool JVM: %s %s (%s)", Runtime.getRuntime().availableProcessors(),
                memTotal(), pg.describe(), javaBin(), System.getProperty("java.version"),
                String.join(" ", toolJvmOptions));
        say("server settings: %s", serverSettings());
        say("sizes %s, %d workspaces, batch size %d, naive loop %s; extra tool arguments: %s",
                sizes, workspaces, BATCH_SIZE, skipNaive ? "skipped" : "stopped after " + naiveCapSeconds
                        + "s (then reported as a lower bound)", toolExtraArgs.isEmpty() ? "none" : toolExtraArgs);

        List<SizeResult> results = new ArrayList<>();
        for (int rows : sizes) {
            results.add(runSize(rows, classpath));
            printTable(results);   // partial tables survive an interrupted long run
        }

        say("RESULTS (wall seconds; total bench time %s)", fmtSeconds(seconds(benchStart)));
        printTable(results);
        printTargets(results);
        if (!failures.isEmpty()) {
            say("CORRECTNESS FAILED:");
            failures.forEach(f -> System.out.println("  - " + f));
            System.exit(1);
        }
        say("all correctness checks passed");
        System.exit(0);
    }

    // ------------------------------------------------------------------ one size

    record Fingerprint(long rows, long inputSum, String hash) {
        @Override public String toString() {
            return rows + " rows, sum(input_tokens)=" + inputSum + ", hash=" + hash;
        }
    }

    record Outcome(String name, double seconds, boolean capped, Map<String, String> notes, Long peakRssKb) {}

    static final class SizeResult {
        int rows;
        long eligible;
        long scopedRows;
        long scopedEligible;
        double seedSeconds;
        Outcome floor, naive, tool, scoped;
    }

    static SizeResult runSize(int rows, String classpath) throws Exception {
        SizeResult r = new SizeResult();
        r.rows = rows;
        OffsetDateTime cutoff = OffsetDateTime.now(ZoneOffset.UTC).minusDays(1).truncatedTo(ChronoUnit.SECONDS);
        say("size %,d: generating the template database (cutoff %s)", rows,
                DateTimeFormatter.ISO_INSTANT.format(cutoff));
        String tpl = pg.createDatabase("bench_tpl_" + rows);
        long t = System.nanoTime();
        pg.seedSampleData(tpl, rows, cutoff, workspaces);
        try (Connection c = pg.adminConnection(tpl); Statement st = c.createStatement()) {
            // Settle the generated table as a long-lived one would be: hint bits set, visibility
            // map built, statistics fresh. Every copy then starts from the same state.
            st.execute("VACUUM (FREEZE, ANALYZE)");
        }
        r.seedSeconds = seconds(t);

        UUID scopedWorkspace;
        Fingerprint expectAll, expectInWs, expectOutWs;
        try (Connection c = pg.adminConnection(tpl)) {
            r.eligible = queryLong(c, "SELECT count(*) FROM task_usage tu WHERE " + ELIGIBLE, cutoff);
            // The workspace whose share of usage rows is closest to 2%.
            try (PreparedStatement ps = c.prepareStatement("""
                    SELECT a.workspace_id, count(*) AS n
                      FROM task_usage tu JOIN agent_task_queue q ON q.id = tu.task_id
                      JOIN agent a ON a.id = q.agent_id
                     GROUP BY 1 ORDER BY abs(count(*) - ? * (SELECT count(*) FROM task_usage)), 1
                     LIMIT 1""")) {
                ps.setDouble(1, SCOPED_SHARE);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    scopedWorkspace = rs.getObject(1, UUID.class);
                    r.scopedRows = rs.getLong(2);
                }
            }
            r.scopedEligible = queryLong(c, "SELECT count(*) FROM task_usage tu WHERE " + ELIGIBLE
                    + " AND " + IN_WORKSPACE, cutoff, scopedWorkspace);
            // What a correct repair leaves, computed from the untouched rows, not from a contender.
            String fixed = "CASE WHEN " + ELIGIBLE + " THEN " + CORRECTED + " ELSE tu.input_tokens END";
            expectAll = fingerprint(c, fixed, "true", cutoff);
            expectInWs = fingerprint(c, fixed, IN_WORKSPACE, cutoff, scopedWorkspace);
            expectOutWs = fingerprint(c, "tu.input_tokens", "NOT " + IN_WORKSPACE, scopedWorkspace);
        }
        admin("ALTER DATABASE " + ident(tpl) + " IS_TEMPLATE true");
        say("size %,d: template ready in %s: %,d eligible rows (%.1f%%); scoped workspace %s holds %,d rows "
                + "(%.2f%%), %,d eligible", rows, fmtSeconds(r.seedSeconds), r.eligible,
                100.0 * r.eligible / rows, scopedWorkspace, r.scopedRows, 100.0 * r.scopedRows / rows,
                r.scopedEligible);

        try {
            r.floor = contender(tpl, rows, "floor", db -> runFloor(db, cutoff),
                    db -> checkFull(db, "floor", cutoff, expectAll));
            r.tool = contender(tpl, rows, "tool", db -> runTool(db, cutoff, null, classpath, rows),
                    db -> checkFull(db, "tool", cutoff, expectAll));
            r.scoped = contender(tpl, rows, "scoped", db -> runTool(db, cutoff, scopedWorkspace, classpath, rows),
                    db -> checkScoped(db, cutoff, scopedWorkspace, expectInWs, expectOutWs));
            if (!skipNaive) {
                r.naive = contender(tpl, rows, "naive", db -> runNaive(db, cutoff),
                        db -> checkFull(db, "naive", cutoff, expectAll));
            }
            if (smoke) {
                negativeControl(tpl, rows, cutoff, expectAll);
            }
        } finally {
            admin("ALTER DATABASE " + ident(tpl) + " IS_TEMPLATE false");
            pg.dropDatabase(tpl);
        }
        return r;
    }

    interface DbStep<T> {
        T apply(String db) throws Exception;
    }

    interface DbCheck {
        void apply(String db) throws Exception;
    }

    static Outcome contender(String tpl, int rows, String name, DbStep<Outcome> run, DbCheck check)
            throws Exception {
        String db = "bench_" + rows + "_" + name + "_" + Long.toHexString(System.nanoTime() & 0xffffff);
        long copyStart = System.nanoTime();
        admin("CREATE DATABASE " + ident(db) + " TEMPLATE " + ident(tpl) + " OWNER "
                + ident(TestDatabase.APP_USER) + " STRATEGY FILE_COPY");
        try {
            admin("CHECKPOINT");
            say("size %,d: %s on fresh copy %s (copied in %s)", rows, name, db, fmtSeconds(seconds(copyStart)));
            String walBefore = adminString("SELECT pg_current_wal_insert_lsn()::text");
            Outcome o = run.apply(db);
            o.notes().put("wal_mb", adminString("SELECT round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '"
                    + walBefore + "') / 1048576)::text"));
            Thread.sleep(500);   // let the finished sessions' statistics reach pg_stat_database
            try (Connection c = pg.adminConnection(controlDb); PreparedStatement ps = c.prepareStatement(
                    "SELECT blks_read, blks_hit, round(temp_bytes / 1048576.0) FROM pg_stat_database WHERE datname = ?")) {
                ps.setString(1, db);
                try (ResultSet rs = ps.executeQuery()) {
                    if (rs.next()) {
                        o.notes().put("shared_buf_misses", String.valueOf(rs.getLong(1)));
                        o.notes().put("shared_buf_hits", String.valueOf(rs.getLong(2)));
                        o.notes().put("temp_mb", String.valueOf(rs.getLong(3)));
                    }
                }
            }
            say("size %,d: %s took %s%s %s", rows, name, fmtSeconds(o.seconds()), o.capped() ? " (STOPPED at the cap)" : "",
                    o.notes());
            if (!o.capped()) {
                long checkStart = System.nanoTime();
                check.apply(db);
                say("size %,d: %s checked in %s", rows, name, fmtSeconds(seconds(checkStart)));
            } else {
                say("size %,d: %s stopped before finishing; its result is not checked", rows, name);
            }
            return o;
        } finally {
            pg.dropDatabase(db);
        }
    }

    // ------------------------------------------------------------------ contenders

    static Outcome runFloor(String db, OffsetDateTime cutoff) throws SQLException {
        Map<String, String> notes = new LinkedHashMap<>();
        try (Connection c = pg.appConnection(db)) {
            long start = System.nanoTime();
            OffsetDateTime from = queryTime(c, "SELECT clock_timestamp() - interval '1 second'");
            long updated;
            try (PreparedStatement ps = c.prepareStatement("UPDATE task_usage tu SET input_tokens = "
                    + CORRECTED + ", updated_at = now() WHERE " + ELIGIBLE)) {
                ps.setObject(1, cutoff);
                updated = ps.executeUpdate();
            }
            OffsetDateTime to = queryTime(c, "SELECT clock_timestamp() + interval '1 second'");
            notes.put("rows_updated", String.valueOf(updated));
            notes.put("update_s", fmtSeconds(seconds(start)));
            analyzeAndRollUp(c, from, to, notes);
            return new Outcome("floor", seconds(start), false, notes, null);
        }
    }

    static Outcome runNaive(String db, OffsetDateTime cutoff) throws SQLException {
        Map<String, String> notes = new LinkedHashMap<>();
        String batch = """
                WITH c AS (
                    SELECT tu.id FROM task_usage tu
                     WHERE %1$s
                     ORDER BY COALESCE(tu.updated_at, tu.created_at), tu.id
                     LIMIT %2$d
                       FOR UPDATE SKIP LOCKED)
                UPDATE task_usage tu
                   SET input_tokens = %3$s, updated_at = now()
                  FROM c
                 WHERE tu.id = c.id AND %4$s""".formatted(ELIGIBLE, BATCH_SIZE, CORRECTED, ELIGIBLE);
        try (Connection c = pg.appConnection(db)) {
            if (explainBatches) {
                explainOneBatch(c, "naive loop, first batch", batch, cutoff, cutoff);
                String byIds = "UPDATE task_usage tu SET input_tokens = " + CORRECTED + ", updated_at = now()"
                        + " WHERE tu.id = ANY((SELECT array_agg(id) FROM (SELECT id FROM task_usage tu WHERE "
                        + ELIGIBLE + " LIMIT " + BATCH_SIZE + ") s)::uuid[]) AND " + ELIGIBLE;
                explainOneBatch(c, "one batch by id, as the tool's work queue hands them out (ids looked up here too)",
                        byIds, cutoff, cutoff);
            }
            long start = System.nanoTime();
            long deadline = start + TimeUnit.SECONDS.toNanos(naiveCapSeconds);
            OffsetDateTime from = queryTime(c, "SELECT clock_timestamp() - interval '1 second'");
            long total = 0;
            int batches = 0;
            boolean capped = false;
            try (PreparedStatement ps = c.prepareStatement(batch)) {
                ps.setObject(1, cutoff);
                ps.setObject(2, cutoff);
                while (true) {
                    int n = ps.executeUpdate();   // autocommit: one transaction per batch
                    total += n;
                    batches++;
                    if (n == 0) {
                        break;
                    }
                    if (System.nanoTime() > deadline) {
                        capped = true;
                        break;
                    }
                }
            }
            OffsetDateTime to = queryTime(c, "SELECT clock_timestamp() + interval '1 second'");
            notes.put("rows_updated", String.valueOf(total));
            notes.put("batches", String.valueOf(batches));
            notes.put("update_s", fmtSeconds(seconds(start)));
            if (capped) {
                notes.put("stopped_after", total + " rows");
                // Every batch scans and top-N sorts the whole table, so batches cost about the
                // same; the rest would take about as long per row as the part that ran.
                long eligible = total + queryLong(c, "SELECT count(*) FROM task_usage tu WHERE " + ELIGIBLE, cutoff);
                notes.put("projected_update_s", fmtSeconds(seconds(start) * eligible / Math.max(1, total)));
                return new Outcome("naive", seconds(start), true, notes, null);
            }
            analyzeAndRollUp(c, from, to, notes);
            return new Outcome("naive", seconds(start), false, notes, null);
        }
    }

    /** EXPLAIN (ANALYZE, BUFFERS) of one write batch, rolled back; printed, not timed. */
    static void explainOneBatch(Connection c, String title, String sql, Object... params) throws SQLException {
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement("EXPLAIN (ANALYZE, BUFFERS) " + sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            System.out.println("   EXPLAIN (ANALYZE, BUFFERS), " + title + ":");
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    System.out.println("     " + rs.getString(1));
                }
            }
        } finally {
            c.rollback();
            c.setAutoCommit(true);
        }
    }

    /** ANALYZE outside the locked transaction, then one rollup call with nested loops off. */
    static void analyzeAndRollUp(Connection c, OffsetDateTime from, OffsetDateTime to, Map<String, String> notes)
            throws SQLException {
        long t = System.nanoTime();
        try (Statement st = c.createStatement()) {
            st.execute("ANALYZE task_usage");
        }
        notes.put("analyze_s", fmtSeconds(seconds(t)));
        t = System.nanoTime();
        c.setAutoCommit(false);
        try (Statement st = c.createStatement()) {
            st.execute("SET LOCAL enable_nestloop = off");
            try (PreparedStatement ps = c.prepareStatement("SELECT rollup_task_usage_hourly_window(?, ?)")) {
                ps.setObject(1, from);
                ps.setObject(2, to);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    notes.put("rollup_rows_touched", String.valueOf(rs.getLong(1)));
                }
            }
            c.commit();
        } finally {
            c.setAutoCommit(true);
        }
        notes.put("rollup_s", fmtSeconds(seconds(t)));
    }

    static final Pattern ROLLUP_LINE = Pattern.compile("rollup (\\d+)/(\\d+): .*rows_touched=(\\d+) took (\\S+)");
    static final Pattern QUEUE_LINE = Pattern.compile("work queue \\S+: (\\d+) rows in (\\d+) batches.* built in (\\S+)");
    static final Pattern ANALYZE_LINE = Pattern.compile("analyzed task_usage in (\\S+)");
    static final Pattern DONE_LINE = Pattern.compile("done: status=(\\S+) rows_updated=(\\d+)");
    static final Pattern FIRST_BATCH_LINE = Pattern.compile("^(\\S+) .*batch 1/\\d+:");

    static Outcome runTool(String db, OffsetDateTime cutoff, UUID workspace, String classpath, int rows)
            throws Exception {
        String name = workspace == null ? "tool" : "scoped";
        Path log = logDir.resolve("tool-" + rows + "-" + name + ".log");
        Path rssFile = logDir.resolve("tool-" + rows + "-" + name + ".time");
        Files.deleteIfExists(rssFile);
        List<String> cmd = new ArrayList<>();
        boolean gnuTime = Files.isExecutable(Path.of("/usr/bin/time"));
        if (gnuTime) {
            cmd.addAll(List.of("/usr/bin/time", "-v", "-o", rssFile.toString()));
        }
        cmd.add(javaBin());
        cmd.addAll(toolJvmOptions);
        cmd.addAll(List.of("-cp", classpath, TOOL_MAIN,
                "--cutoff", DateTimeFormatter.ISO_INSTANT.format(cutoff), "--execute",
                "--batch-size", String.valueOf(BATCH_SIZE), "--sleep-between-batches", "0s",
                "--format", "csv", "--output", logDir.resolve("tool-" + rows + "-" + name + "-summary.csv").toString()));
        if (workspace != null) {
            cmd.addAll(List.of("--workspace-id", workspace.toString()));
        }
        cmd.addAll(toolExtraArgs);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
        // The password travels in the environment, as in the Kubernetes Job, never on the command line.
        pb.environment().put("DATABASE_URL", pg.appLibpqUrl(db));
        long start = System.nanoTime();
        Process p = pb.start();
        long hwmKb = 0;
        while (!p.waitFor(100, TimeUnit.MILLISECONDS)) {
            if (!gnuTime) {
                hwmKb = Math.max(hwmKb, vmHwmKb(p.pid()));
            }
        }
        double secs = seconds(start);
        int exit = p.exitValue();
        if (gnuTime && Files.exists(rssFile)) {
            Matcher m = Pattern.compile("Maximum resident set size \\(kbytes\\): (\\d+)").matcher(Files.readString(rssFile));
            if (m.find()) {
                hwmKb = Long.parseLong(m.group(1));
            }
        }
        Map<String, String> notes = new LinkedHashMap<>();
        notes.put("exit", String.valueOf(exit));
        double rollupSecs = 0;
        long rollupCalls = 0;
        long rollupTouched = 0;
        String firstBatchAt = null;
        for (String line : Files.readAllLines(log)) {
            Matcher m;
            if ((m = ROLLUP_LINE.matcher(line)).find()) {
                rollupCalls++;
                rollupTouched += Long.parseLong(m.group(3));
                rollupSecs += goSeconds(m.group(4));
            } else if ((m = QUEUE_LINE.matcher(line)).find()) {
                notes.put("queued", m.group(1));
                notes.put("queue_build_s", fmtSeconds(goSeconds(m.group(3))));
            } else if ((m = ANALYZE_LINE.matcher(line)).find()) {
                notes.put("analyze_s", fmtSeconds(goSeconds(m.group(1))));
            } else if ((m = DONE_LINE.matcher(line)).find()) {
                notes.put("status", m.group(1));
                notes.put("rows_updated", m.group(2));
            }
        }
        notes.put("rollup_calls", String.valueOf(rollupCalls));
        notes.put("rollup_s", fmtSeconds(rollupSecs));
        notes.put("rollup_rows_touched", String.valueOf(rollupTouched));
        notes.put("peak_rss_mb", hwmKb > 0 ? String.valueOf(hwmKb / 1024) : "n/a");
        notes.put("log", log.toString());
        if (exit != 0) {
            failures.add(rows + " rows, " + name + ": the tool exited " + exit + " (see " + log + ")");
        }
        return new Outcome(name, secs, false, notes, hwmKb > 0 ? hwmKb : null);
    }

    // ------------------------------------------------------------------ checks

    /**
     * Proves the checks can fail: after a correct floor run, one row's input_tokens and one
     * bucket of the rollup are changed; each must be reported. Only a check that stays silent
     * counts as a failure of the benchmark.
     */
    static void negativeControl(String tpl, int rows, OffsetDateTime cutoff, Fingerprint expectAll) throws Exception {
        contender(tpl, rows, "negative-control", db -> runFloor(db, cutoff), db -> {
            try (Connection c = pg.adminConnection(db); Statement st = c.createStatement()) {
                st.executeUpdate("UPDATE task_usage SET input_tokens = input_tokens + 1"
                        + " WHERE id = (SELECT id FROM task_usage ORDER BY id LIMIT 1)");
                st.executeUpdate("UPDATE task_usage_hourly SET event_count = event_count + 1"
                        + " WHERE ctid = (SELECT min(ctid) FROM task_usage_hourly)");
            }
            int before = failures.size();
            System.out.println("   (negative control: one row and one bucket were changed on purpose; "
                    + "two FAIL lines are expected next)");
            checkFull(db, "negative-control", cutoff, expectAll);
            int caught = failures.size() - before;
            failures.subList(before, failures.size()).clear();
            if (caught == 2) {
                System.out.println("   ok   negative-control: both deliberate changes were detected");
            } else {
                String msg = "negative-control: expected the checks to report 2 deliberate changes, they reported " + caught;
                System.out.println("   FAIL " + msg);
                failures.add(msg);
            }
        });
    }

    static void checkFull(String db, String who, OffsetDateTime cutoff, Fingerprint expected) throws SQLException {
        try (Connection c = pg.adminConnection(db)) {
            Fingerprint got = fingerprint(c, "tu.input_tokens", "true");
            expect(who, "task_usage (id, input_tokens) equals the correct repair", expected, got);
            expect(who, "eligible rows left", 0L, queryLong(c, "SELECT count(*) FROM task_usage tu WHERE " + ELIGIBLE, cutoff));
            expect(who, "task_usage_hourly buckets differing from a fresh aggregation", 0L, hourlyMismatches(c));
        }
    }

    static void checkScoped(String db, OffsetDateTime cutoff, UUID ws, Fingerprint expectIn, Fingerprint expectOut)
            throws SQLException {
        try (Connection c = pg.adminConnection(db)) {
            expect("scoped", "rows of the workspace equal the correct repair", expectIn,
                    fingerprint(c, "tu.input_tokens", IN_WORKSPACE, ws));
            expect("scoped", "rows of other workspaces untouched", expectOut,
                    fingerprint(c, "tu.input_tokens", "NOT " + IN_WORKSPACE, ws));
            expect("scoped", "eligible rows left in the workspace", 0L, queryLong(c,
                    "SELECT count(*) FROM task_usage tu WHERE " + ELIGIBLE + " AND " + IN_WORKSPACE, cutoff, ws));
            expect("scoped", "task_usage_hourly buckets differing from a fresh aggregation", 0L, hourlyMismatches(c));
        }
    }

    static void expect(String who, String what, Object expected, Object actual) {
        if (expected.equals(actual)) {
            System.out.println("   ok   " + who + ": " + what + " (" + actual + ")");
        } else {
            String msg = who + ": " + what + ": expected " + expected + ", got " + actual;
            System.out.println("   FAIL " + msg);
            failures.add(msg);
        }
    }

    static long hourlyMismatches(Connection c) throws SQLException {
        try (Statement st = c.createStatement()) {
            st.execute("SET work_mem = '256MB'");
            try (ResultSet rs = st.executeQuery("SELECT count(*) FROM (" + TestDatabase.HOURLY_MISMATCH_SQL + ") m")) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    /** Order-independent fingerprint of {@code (id, value)} over the rows matching {@code where}. */
    static Fingerprint fingerprint(Connection c, String valueExpr, String where, Object... params) throws SQLException {
        String sql = "SELECT count(*), COALESCE(sum(v), 0)::bigint,"
                + " COALESCE(sum(hashtextextended(id::text || '/' || v::text, 5))::text, '0')"
                + " FROM (SELECT tu.id, (" + valueExpr + ") AS v FROM task_usage tu WHERE " + where + ") x";
        // The value expression may carry the cutoff parameter before the WHERE's own parameters.
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return new Fingerprint(rs.getLong(1), rs.getLong(2), rs.getString(3));
            }
        }
    }

    // ------------------------------------------------------------------ report

    static void printTable(List<SizeResult> results) {
        String fmt = "%-10s %10s %9s %9s %11s %9s %10s %10s %12s %12s %12s%n";
        System.out.println();
        System.out.printf(Locale.ROOT, fmt, "rows", "eligible", "floor_s", "tool_s", "naive_s", "scoped_s",
                "tool/floor", "naive/tool", "scoped/tool", "tool_rows/s", "tool_rss_MB");
        for (SizeResult r : results) {
            boolean naiveCapped = r.naive != null && r.naive.capped();
            System.out.printf(Locale.ROOT, fmt, String.format(Locale.ROOT, "%,d", r.rows),
                    String.format(Locale.ROOT, "%,d", r.eligible),
                    secs(r.floor), secs(r.tool), (naiveCapped ? ">" : "") + secs(r.naive), secs(r.scoped),
                    ratio(r.tool, r.floor, ""), ratio(r.naive, r.tool, naiveCapped ? ">" : ""),
                    r.scoped == null || r.tool == null ? "-" : String.format(Locale.ROOT, "%.1f%%",
                            100 * r.scoped.seconds() / r.tool.seconds()),
                    r.tool == null ? "-" : String.format(Locale.ROOT, "%,.0f", r.eligible / r.tool.seconds()),
                    r.tool == null || r.tool.peakRssKb() == null ? "-" : String.valueOf(r.tool.peakRssKb() / 1024));
        }
        System.out.println("tool_rows/s = eligible rows corrected per wall second of the whole tool run "
                + "(JVM start, dry-run summary, batches, ANALYZE, rollup, verification).");
        for (SizeResult r : results) {
            for (Outcome o : new Outcome[] {r.floor, r.tool, r.scoped, r.naive}) {
                if (o != null) {
                    Map<String, String> n = new LinkedHashMap<>(o.notes());
                    n.remove("log");
                    System.out.printf(Locale.ROOT, "  %,d %-7s %s%n", r.rows, o.name(), n);
                }
            }
        }
    }

    static void printTargets(List<SizeResult> results) {
        say("TARGETS%s", smoke ? " (smoke size: informational only, judged on the full run)" : "");
        SizeResult oneM = find(results, 1_000_000);
        SizeResult largest = results.get(results.size() - 1);
        for (SizeResult r : results) {
            if (r.tool == null || r.floor == null) {
                continue;
            }
            double tf = r.tool.seconds() / r.floor.seconds();
            target(r.rows >= 1_000_000, String.format(Locale.ROOT, "tool/floor <= 1.5 at %,d: %.2f", r.rows, tf), tf <= 1.5);
            double sc = r.scoped.seconds() / r.tool.seconds();
            target(r.rows >= 1_000_000, String.format(Locale.ROOT, "scoped <= 10%% of full tool at %,d: %.1f%% "
                    + "(workspace holds %.2f%% of rows)", r.rows, 100 * sc, 100.0 * r.scopedRows / r.rows), sc <= 0.10);
            if (r.naive != null) {
                double nt = r.naive.seconds() / r.tool.seconds();
                String text = String.format(Locale.ROOT, "naive/tool >= 10 at %,d: %s%.1f", r.rows,
                        r.naive.capped() ? ">" : "", nt);
                if (r.naive.capped() && nt < 10 && !smoke) {
                    System.out.println("  n/a    " + text + " (naive stopped at the cap: only a lower bound; see "
                            + "projected_update_s)");
                } else {
                    target(r.rows >= 1_000_000, text, nt >= 10);
                }
            }
        }
        if (oneM != null && largest.rows > oneM.rows && largest.tool != null && oneM.tool != null) {
            double a = largest.tool.seconds() / largest.eligible;
            double b = oneM.tool.seconds() / oneM.eligible;
            target(true, String.format(Locale.ROOT, "tool time per eligible row at %,d within 1.3x of 1,000,000: "
                    + "%.1f us vs %.1f us = %.2fx", largest.rows, a * 1e6, b * 1e6, a / b), a / b <= 1.3);
            if (largest.naive != null && oneM.naive != null) {
                double na = largest.naive.seconds() / largest.tool.seconds();
                double nb = oneM.naive.seconds() / oneM.tool.seconds();
                String text = String.format(Locale.ROOT, "naive/tool grows from 1,000,000 to %,d: %.1f -> %s%.1f",
                        largest.rows, nb, largest.naive.capped() ? ">" : "", na);
                if (largest.naive.capped() && na < nb) {
                    System.out.println("  n/a    " + text + " (naive stopped at the cap: only a lower bound; see "
                            + "projected_update_s)");
                } else {
                    target(true, text, na >= nb);
                }
            }
        }
        if (largest.tool != null && largest.tool.peakRssKb() != null) {
            long mb = largest.tool.peakRssKb() / 1024;
            target(largest.rows >= 4_000_000 || !smoke, String.format(Locale.ROOT,
                    "tool peak RSS < 300 MB at %,d with %s: %d MB", largest.rows, String.join(" ", toolJvmOptions), mb),
                    mb < 300);
        }
    }

    static void target(boolean judged, String text, boolean met) {
        System.out.println("  " + (!judged || smoke ? "(info) " : met ? "MET    " : "MISSED ") + text);
    }

    static SizeResult find(List<SizeResult> results, int rows) {
        return results.stream().filter(r -> r.rows == rows).findFirst().orElse(null);
    }

    static String secs(Outcome o) {
        return o == null ? "-" : fmtSeconds(o.seconds());
    }

    static String ratio(Outcome a, Outcome b, String prefix) {
        return a == null || b == null ? "-" : prefix + String.format(Locale.ROOT, "%.2f", a.seconds() / b.seconds());
    }

    // ------------------------------------------------------------------ helpers

    static String toolClasspath() throws IOException, InterruptedException {
        String cp = System.getenv("BENCH_TOOL_CLASSPATH");
        if (cp != null && !cp.isBlank()) {
            return cp.trim();
        }
        // Ask JBang for the tool's own classpath (its compiled jar first, then its dependencies).
        Process p = new ProcessBuilder("./jbang", "info", "classpath", TOOL_MAIN + ".java")
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String out = new String(p.getInputStream().readAllBytes()).trim();
        if (p.waitFor() != 0 || out.isEmpty()) {
            throw new IllegalStateException("cannot get the tool's classpath; run from the repository root "
                    + "or set BENCH_TOOL_CLASSPATH");
        }
        String[] lines = out.split("\n");
        return lines[lines.length - 1].trim();
    }

    static String javaBin() {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }

    static long vmHwmKb(long pid) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc", String.valueOf(pid), "status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("\\D+", ""));
                }
            }
        } catch (IOException | RuntimeException ignored) {
            // The process has just exited.
        }
        return 0;
    }

    static String memTotal() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith("MemTotal:")) {
                    return String.format(Locale.ROOT, "%.1f GiB",
                            Long.parseLong(line.replaceAll("\\D+", "")) / 1024.0 / 1024.0);
                }
            }
        } catch (IOException | RuntimeException ignored) {
            // Not Linux.
        }
        return "unknown";
    }

    static String serverSettings() throws SQLException {
        try (Connection c = pg.adminConnection(controlDb); Statement st = c.createStatement();
             ResultSet rs = st.executeQuery("SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name)"
                     + " FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'maintenance_work_mem',"
                     + " 'max_wal_size', 'fsync', 'synchronous_commit', 'full_page_writes', 'effective_cache_size',"
                     + " 'max_parallel_workers_per_gather', 'jit')")) {
            rs.next();
            return rs.getString(1);
        }
    }

    static String adminString(String sql) throws SQLException {
        try (Connection c = pg.adminConnection(controlDb); Statement st = c.createStatement();
             ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    static void admin(String sql) throws SQLException {
        try (Connection c = pg.adminConnection(controlDb); Statement st = c.createStatement()) {
            st.execute(sql);
        }
    }

    static long queryLong(Connection c, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    static OffsetDateTime queryTime(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getObject(1, OffsetDateTime.class);
        }
    }

    static final Pattern GO_PART = Pattern.compile("(\\d+(?:\\.\\d+)?)(h|ms|us|µs|ns|m|s)");

    /** Seconds in a Go-style duration as the tool prints it (1m2.5s, 850ms). */
    static double goSeconds(String text) {
        double total = 0;
        Matcher m = GO_PART.matcher(text);
        while (m.find()) {
            double v = Double.parseDouble(m.group(1));
            total += switch (m.group(2)) {
                case "h" -> v * 3600;
                case "m" -> v * 60;
                case "s" -> v;
                case "ms" -> v / 1e3;
                case "us", "µs" -> v / 1e6;
                default -> v / 1e9;
            };
        }
        return total;
    }

    static double seconds(long startNanos) {
        return (System.nanoTime() - startNanos) / 1e9;
    }

    static String fmtSeconds(double s) {
        return String.format(Locale.ROOT, s < 10 ? "%.2f" : "%.1f", s);
    }

    static String ident(String name) {
        return "\"" + name.replace("\"", "\"\"") + "\"";
    }

    static void say(String format, Object... args) {
        System.out.println();
        System.out.println("== " + String.format(Locale.ROOT, format, args));
        System.out.flush();
    }
}
