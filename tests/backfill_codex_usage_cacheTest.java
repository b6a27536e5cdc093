///usr/bin/env jbang "$0" "$@" ; exit $?
//JAVA 17+
//SOURCES ../backfill_codex_usage_cache.java
//SOURCES TestDatabase.java
//DEPS org.junit.jupiter:junit-jupiter:5.14.4
//DEPS org.junit.platform:junit-platform-launcher:1.14.4
//DESCRIPTION The test suite of backfill_codex_usage_cache, against a real PostgreSQL.
//DESCRIPTION Run with ./jbang tests/backfill_codex_usage_cacheTest.java [NestedClassName...]

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.launcher.listeners.TestExecutionSummary;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.discovery.DiscoverySelectors;
import picocli.CommandLine;

/**
 * Tests of backfill_codex_usage_cache: pure helpers, the command line, and behaviour against a
 * real PostgreSQL (TEST_DATABASE_URL, else Testcontainers when Docker is reachable, else an
 * embedded PostgreSQL 17). Every database test gets a fresh database with the fixture schema.
 */
public class backfill_codex_usage_cacheTest {

    static final String CUTOFF_TEXT = "2026-06-13T08:00:00Z";
    static final OffsetDateTime CUTOFF = OffsetDateTime.parse(CUTOFF_TEXT);
    static final UUID WORKSPACE_A = UUID.fromString("aaaaaaaa-0000-4000-8000-000000000001");
    static final UUID WORKSPACE_B = UUID.fromString("bbbbbbbb-0000-4000-8000-000000000002");
    /** A port nothing listens on: a test that expects exit 2 would get 1 if the tool connected. */
    static final String UNREACHABLE_URL = "postgres://backfill_app:" + urlEncode(TestDatabase.APP_PASSWORD)
            + "@127.0.0.1:1/nowhere?sslmode=disable";

    public static void main(String... args) {
        LauncherDiscoveryRequestBuilder request = LauncherDiscoveryRequestBuilder.request();
        if (args.length == 0) {
            request.selectors(DiscoverySelectors.selectClass(backfill_codex_usage_cacheTest.class));
        } else {
            // Each argument names a nested class (Execute) or one of its methods (Execute#name).
            for (String name : args) {
                String className = backfill_codex_usage_cacheTest.class.getName() + "$" + name.split("#")[0];
                request.selectors(name.contains("#")
                        ? DiscoverySelectors.selectMethod(className + "#" + name.split("#")[1])
                        : DiscoverySelectors.selectClass(className));
            }
        }
        LauncherDiscoveryRequest discovery = request.build();
        Launcher launcher = LauncherFactory.create();
        SummaryGeneratingListener summary = new SummaryGeneratingListener();
        TestExecutionListener progress = new TestExecutionListener() {
            @Override
            public void executionFinished(TestIdentifier id, TestExecutionResult result) {
                if (id.isTest()) {
                    String name = id.getUniqueId().replaceAll(".*\\[nested-class:([^\\]]+)\\].*", "$1");
                    System.out.printf("%-6s %s > %s%n", result.getStatus() == TestExecutionResult.Status.SUCCESSFUL
                            ? "PASS" : "FAIL", name.startsWith("[") ? "" : name, id.getDisplayName());
                }
            }
        };
        launcher.execute(discovery, summary, progress);
        TestExecutionSummary s = summary.getSummary();
        PrintWriter stdout = new PrintWriter(System.out, true);
        s.printFailuresTo(stdout, 25);
        long failed = s.getTestsFailedCount() + s.getTestsAbortedCount() + s.getContainersFailedCount();
        if (s.getTestsSkippedCount() > 0) {
            System.out.println(s.getTestsSkippedCount() + " skipped");
        }
        System.out.println(s.getTestsSucceededCount() + " passed, " + failed + " failed");
        System.exit(failed == 0 && s.getTestsSucceededCount() > 0 ? 0 : 1);
    }

    // ================================================================ running the tool

    record Result(int exitCode, String stdout, String stderr) {
        String all() {
            return stdout + stderr;
        }

        List<String> errorLines() {
            return stderr.lines().filter(l -> l.startsWith("Error: ")).toList();
        }

        String describe() {
            return "exit=" + exitCode + "\n--- stdout\n" + stdout + "--- stderr\n" + stderr;
        }
    }

    /** Runs the tool in this JVM with captured writers and the given environment. */
    static Result run(Map<String, String> env, String... args) {
        backfill_codex_usage_cache command = new backfill_codex_usage_cache();
        command.environment = env;
        CommandLine cmd = backfill_codex_usage_cache.newCommandLine(command);
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cmd.setOut(new PrintWriter(out, true));
        cmd.setErr(new PrintWriter(err, true));
        int code = cmd.execute(args);
        Result result = new Result(code, out.toString(), err.toString());
        assertNoSecret(result.all());
        return result;
    }

    static Result runAgainst(String db, String... args) {
        return run(Map.of("DATABASE_URL", TestDatabase.shared().appLibpqUrl(db)), args);
    }

    static void assertNoSecret(String text) {
        assertFalse(text.contains(TestDatabase.APP_PASSWORD), "the password leaked into output:\n" + text);
        assertFalse(text.contains(urlEncode(TestDatabase.APP_PASSWORD)), "the encoded password leaked:\n" + text);
    }

    static String urlEncode(String s) {
        return java.net.URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
    }

    /** The tool running as its own process (for signals), with the same classpath as this JVM. */
    static final class ToolProcess {
        final Process process;
        final Path log;

        ToolProcess(String db, String... args) throws IOException {
            List<String> command = new ArrayList<>();
            command.add(ProcessHandle.current().info().command().orElse("java"));
            command.add("-cp");
            command.add(System.getProperty("java.class.path"));
            command.add("backfill_codex_usage_cache");
            command.addAll(List.of(args));
            log = Files.createTempFile("backfill-process", ".log");
            ProcessBuilder pb = new ProcessBuilder(command);
            pb.environment().put("DATABASE_URL", TestDatabase.shared().appLibpqUrl(db));
            pb.redirectErrorStream(true);
            pb.redirectOutput(log.toFile());
            process = pb.start();
        }

        String output() throws IOException {
            return Files.readString(log);
        }

        void waitFor(String needle, Duration timeout) throws Exception {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (!output().contains(needle)) {
                if (System.nanoTime() > deadline || !process.isAlive() && !output().contains(needle)) {
                    throw new AssertionError("no '" + needle + "' in:\n" + output());
                }
                Thread.sleep(20);
            }
        }

        int stop(boolean kill) throws Exception {
            if (kill) {
                process.destroyForcibly();
            } else {
                process.destroy();
            }
            assertTrue(process.waitFor(60, TimeUnit.SECONDS), "process ended");
            String text = output();
            assertNoSecret(text);
            Files.deleteIfExists(log);
            lastOutput = text;
            return process.exitValue();
        }

        String lastOutput = "";
    }

    // ================================================================ seeding and reading

    /** A fresh fixture database per test, dropped afterwards. */
    abstract static class WithDatabase {
        String db;
        Connection admin;

        @BeforeEach
        void createDatabase() throws SQLException {
            db = TestDatabase.shared().createDatabase("t");
            admin = TestDatabase.shared().adminConnection(db);
        }

        @AfterEach
        void dropDatabase() throws SQLException {
            admin.close();
            TestDatabase.shared().dropDatabase(db);
        }

        void sql(String sql, Object... params) throws SQLException {
            try (PreparedStatement ps = admin.prepareStatement(sql)) {
                for (int i = 0; i < params.length; i++) {
                    ps.setObject(i + 1, params[i]);
                }
                ps.execute();
            }
        }

        <T> T scalar(String sql, Class<T> type, Object... params) throws SQLException {
            try (PreparedStatement ps = admin.prepareStatement(sql)) {
                for (int i = 0; i < params.length; i++) {
                    ps.setObject(i + 1, params[i]);
                }
                try (ResultSet rs = ps.executeQuery()) {
                    assertTrue(rs.next(), "no row from " + sql);
                    return rs.getObject(1, type);
                }
            }
        }

        void seedWorkspace(UUID id) throws SQLException {
            sql("INSERT INTO workspace (id, name, slug) VALUES (?, ?, ?)", id, "ws " + id, "ws-" + id);
        }

        /** A new agent and task (with a runtime, so the rollup aggregates it) in the workspace. */
        UUID seedTask(UUID workspace) throws SQLException {
            UUID agent = UUID.randomUUID();
            UUID task = UUID.randomUUID();
            sql("INSERT INTO agent (id, workspace_id, name) VALUES (?, ?, 'agent')", agent, workspace);
            sql("INSERT INTO agent_task_queue (id, agent_id, runtime_id) VALUES (?, ?, ?)", task, agent,
                    UUID.nameUUIDFromBytes(workspace.toString().getBytes(StandardCharsets.UTF_8)));
            return task;
        }

        UUID seedUsageRow(UUID workspace, String provider, long input, long cache, String createdAt,
                          String updatedAt) throws SQLException {
            UUID id = UUID.randomUUID();
            sql("INSERT INTO task_usage (id, task_id, provider, model, input_tokens, output_tokens, "
                    + "cache_read_tokens, cache_write_tokens, created_at, updated_at) "
                    + "VALUES (?, ?, ?, 'gpt-5-codex', ?, 77, ?, 5, ?::timestamptz, ?::timestamptz)",
                    id, seedTask(workspace), provider, input, cache, createdAt, updatedAt);
            return id;
        }

        long inputTokens(UUID id) throws SQLException {
            return scalar("SELECT input_tokens FROM task_usage WHERE id = ?", Long.class, id);
        }

        void assertInputTokens(UUID id, long expected, String which) throws SQLException {
            assertEquals(expected, inputTokens(id), which + " row " + id + ": input_tokens");
        }

        /** Every column of every row, keyed by id, as text. */
        Map<String, String> rowsOf(String table, String key) throws SQLException {
            Map<String, String> rows = new LinkedHashMap<>();
            try (Statement st = admin.createStatement();
                 ResultSet rs = st.executeQuery("SELECT " + key + "::text, t::text FROM " + table + " t ORDER BY 1, 2")) {
                while (rs.next()) {
                    rows.merge(rs.getString(1), rs.getString(2), (a, b) -> a + "|" + b);
                }
            }
            return rows;
        }

        Map<String, String> usageRows() throws SQLException {
            return rowsOf("task_usage", "id");
        }

        Map<String, String> hourlyRows() throws SQLException {
            return rowsOf("task_usage_hourly", "(bucket_hour, workspace_id, runtime_id, agent_id, project_id, provider, model)");
        }

        /** The rows of task_usage_hourly that differ from a fresh aggregation of task_usage. */
        List<String> hourlyMismatches() throws SQLException {
            List<String> rows = new ArrayList<>();
            try (Statement st = admin.createStatement(); ResultSet rs = st.executeQuery(TestDatabase.HOURLY_MISMATCH_SQL)) {
                int columns = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    StringBuilder sb = new StringBuilder();
                    for (int i = 1; i <= columns; i++) {
                        sb.append(rs.getString(i)).append(' ');
                    }
                    rows.add(sb.toString());
                }
            }
            return rows;
        }

        void rollupEverything() throws SQLException {
            sql("SELECT rollup_task_usage_hourly_window('-infinity', 'infinity')");
        }

        long eligibleCount() throws SQLException {
            return scalar("SELECT count(*) FROM task_usage WHERE provider = 'codex' AND cache_read_tokens > 0 "
                    + "AND input_tokens > 0 AND COALESCE(updated_at, created_at) < ?", Long.class, CUTOFF);
        }

        /** N eligible rows in workspace A, all created before the cutoff. */
        List<UUID> seedEligibleRows(int n) throws SQLException {
            seedWorkspaceIfMissing(WORKSPACE_A);
            List<UUID> ids = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                ids.add(seedUsageRow(WORKSPACE_A, "codex", 1000 + i, 100 + i,
                        "2026-06-0" + (1 + i % 9) + "T0" + (i % 10) + ":15:00Z", "2026-06-10T00:00:00Z"));
            }
            return ids;
        }

        void seedWorkspaceIfMissing(UUID id) throws SQLException {
            sql("INSERT INTO workspace (id, name, slug) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", id, "ws " + id, "ws-" + id);
        }

        Result dryRunJson(String... extra) {
            List<String> args = new ArrayList<>(List.of("--cutoff", CUTOFF_TEXT, "--format", "json"));
            args.addAll(List.of(extra));
            return runAgainst(db, args.toArray(String[]::new));
        }

        Result execute(String... extra) {
            List<String> args = new ArrayList<>(List.of("--cutoff", CUTOFF_TEXT, "--execute"));
            args.addAll(List.of(extra));
            return runAgainst(db, args.toArray(String[]::new));
        }
    }

    /** The hand-computed fixture: one row of each kind, in two workspaces. */
    static final class KindsOfRows {
        UUID eligible;
        UUID eligibleLegacyNull;
        UUID clamped;
        UUID zeroCache;
        UUID zeroInput;
        UUID otherProvider;
        UUID updatedAfterCutoff;
        UUID updatedAtCutoff;
        UUID legacyNullAfterCutoff;
        UUID lastSecondBeforeCutoff;
        UUID otherWorkspace;

        static KindsOfRows seed(WithDatabase t) throws SQLException {
            KindsOfRows k = new KindsOfRows();
            t.seedWorkspace(WORKSPACE_A);
            t.seedWorkspace(WORKSPACE_B);
            k.eligible = t.seedUsageRow(WORKSPACE_A, "codex", 1000, 300, "2026-06-10T10:00:00Z", "2026-06-10T10:05:00Z");
            k.eligibleLegacyNull = t.seedUsageRow(WORKSPACE_A, "codex", 5000, 1200, "2026-06-10T23:59:59.5Z", null);
            k.clamped = t.seedUsageRow(WORKSPACE_A, "codex", 100, 400, "2026-06-11T01:00:00Z", "2026-06-11T01:00:00Z");
            k.zeroCache = t.seedUsageRow(WORKSPACE_A, "codex", 1000, 0, "2026-06-10T11:00:00Z", "2026-06-10T11:00:00Z");
            k.zeroInput = t.seedUsageRow(WORKSPACE_A, "codex", 0, 50, "2026-06-10T12:00:00Z", "2026-06-10T12:00:00Z");
            k.otherProvider = t.seedUsageRow(WORKSPACE_A, "claude", 1000, 300, "2026-06-10T13:00:00Z", "2026-06-10T13:00:00Z");
            k.updatedAfterCutoff = t.seedUsageRow(WORKSPACE_A, "codex", 1000, 300, "2026-06-10T14:00:00Z", "2026-06-14T00:00:00Z");
            k.updatedAtCutoff = t.seedUsageRow(WORKSPACE_A, "codex", 1000, 300, "2026-06-10T15:00:00Z", "2026-06-13T08:00:00Z");
            k.legacyNullAfterCutoff = t.seedUsageRow(WORKSPACE_A, "codex", 1000, 300, "2026-06-13T09:00:00Z", null);
            k.lastSecondBeforeCutoff = t.seedUsageRow(WORKSPACE_A, "codex", 2000, 500, "2026-06-13T07:59:59Z", null);
            k.otherWorkspace = t.seedUsageRow(WORKSPACE_B, "codex", 3000, 1000, "2026-06-12T12:00:00Z", "2026-06-12T12:00:00Z");
            return k;
        }

        List<UUID> untouched() {
            return List.of(zeroCache, zeroInput, otherProvider, updatedAfterCutoff, updatedAtCutoff, legacyNullAfterCutoff);
        }
    }

    static JsonNode json(Result r) throws IOException {
        return new ObjectMapper().readTree(r.stdout());
    }

    static String groupLine(JsonNode g) {
        return g.get("workspace_id").asText().substring(0, 8) + " " + g.get("date_utc").asText() + " rows="
                + g.get("rows").asLong() + " before=" + g.get("input_before").asLong() + " after="
                + g.get("input_after").asLong() + " removed=" + g.get("input_tokens_removed").asLong()
                + " clamped=" + g.get("clamped_rows").asLong();
    }

    static List<String> groupLines(JsonNode doc) {
        List<String> lines = new ArrayList<>();
        doc.get("groups").forEach(g -> lines.add(groupLine(g)));
        return lines;
    }

    // ================================================================ pure helpers

    @Nested
    @DisplayName("pure helpers")
    class PureHelpers {

        @ParameterizedTest(name = "{0} -> {1}")
        @CsvSource({
            "2026-06-13T08:00:00Z, 2026-06-13T08:00:00Z",
            "2026-06-13T16:00:00+08:00, 2026-06-13T08:00:00Z",
            "2026-06-13T03:30:00-04:30, 2026-06-13T08:00:00Z",
            "2026-06-13T08:00:00.123456Z, 2026-06-13T08:00:00.123456Z",
            "2026-06-13t08:00:00z, 2026-06-13T08:00:00Z",
        })
        void normalizesCutoffToUtc(String given, String expected) {
            OffsetDateTime parsed = backfill_codex_usage_cache.CutoffConverter.parseCutoff(given);
            assertEquals(OffsetDateTime.parse(expected).toInstant(), parsed.toInstant(), "instant of " + given);
            assertEquals(ZoneOffset.UTC, parsed.getOffset(), "offset of " + given);
        }

        @ParameterizedTest(name = "rejects cutoff {0}")
        @ValueSource(strings = {"2026-06-13T08:00:00", "2026-06-13", "2026-06-13T08:00:00+0800",
            "2026-13-01T00:00:00Z", "2026-06-13T08:00:00.1234567Z", "yesterday", ""})
        void rejectsCutoffWithoutOffsetOrShape(String given) {
            assertThrows(CommandLine.TypeConversionException.class,
                    () -> backfill_codex_usage_cache.CutoffConverter.parseCutoff(given), given);
        }

        @ParameterizedTest(name = "{0} = {1} ms")
        @CsvSource({"500ms, 500", "1s, 1000", "1m30s, 90000", "1.5h, 5400000", "0, 0", "2h45m, 9900000",
            ".5s, 500", "1500us, 1", "-2s, -2000"})
        void parsesGoDurations(String given, long millis) {
            assertEquals(millis, backfill_codex_usage_cache.GoDurationConverter.parse(given).toMillis(), given);
        }

        @ParameterizedTest(name = "rejects duration {0}")
        @ValueSource(strings = {"5", "1x", "s", "1.5.2s", "1 s", ""})
        void rejectsMalformedDurations(String given) {
            assertThrows(CommandLine.TypeConversionException.class,
                    () -> backfill_codex_usage_cache.GoDurationConverter.parse(given), given);
        }

        @Test
        void formatsDurationsTheGoWay() {
            assertEquals("1m30s", backfill_codex_usage_cache.GoDurationConverter.format(Duration.ofSeconds(90)));
            assertEquals("500ms", backfill_codex_usage_cache.GoDurationConverter.format(Duration.ofMillis(500)));
            assertEquals("1.5s", backfill_codex_usage_cache.GoDurationConverter.format(Duration.ofMillis(1500)));
            assertEquals("0s", backfill_codex_usage_cache.GoDurationConverter.format(Duration.ZERO));
        }

        @Test
        void convertsLibpqUriWithEncodedCredentialsToJdbc() {
            var target = backfill_codex_usage_cache.DatabaseTarget.parse(
                    "postgres://app%2Buser:p%40ss%3Aw%2Frd%25+x@db.example:6543/my%20db"
                            + "?sslmode=require&application_name=back%2Bfill&connect_timeout=7&pool_max_conns=10",
                    "DATABASE_URL");

            assertAll(
                    () -> assertEquals("jdbc:postgresql://db.example:6543/my+db", target.jdbcUrl()),
                    () -> assertEquals("app+user", target.properties().getProperty("user")),
                    () -> assertEquals("p@ss:w/rd%+x", target.properties().getProperty("password")),
                    () -> assertEquals("require", target.properties().getProperty("sslmode")),
                    () -> assertEquals("back+fill", target.properties().getProperty("ApplicationName")),
                    () -> assertEquals("7", target.properties().getProperty("connectTimeout")),
                    () -> assertEquals("0", target.properties().getProperty("prepareThreshold")),
                    () -> assertTrue(target.notes().get(0).contains("pool_max_conns"), target.notes().toString()),
                    () -> assertEquals("postgres://app+user@db.example:6543/my db?sslmode=require", target.display()),
                    () -> assertTrue(target.secrets().contains("p@ss:w/rd%+x"), "password registered for redaction"));
        }

        @Test
        void keepsMultipleHostsAndIpv6() {
            var target = backfill_codex_usage_cache.DatabaseTarget.parse(
                    "postgresql://u@[::1]:5433,db2/app?target_session_attrs=read-write", "--database-url");
            assertEquals("jdbc:postgresql://[::1]:5433,db2:5432/app", target.jdbcUrl());
            assertEquals("primary", target.properties().getProperty("targetServerType"));
        }

        @Test
        void buildsTargetFromPgEnvironment() {
            var target = backfill_codex_usage_cache.DatabaseTarget.resolve(null, Map.of("PGHOST", "pg.internal",
                    "PGPORT", "6000", "PGDATABASE", "platform", "PGUSER", "ops", "PGPASSWORD", "hunter2"));
            assertEquals("jdbc:postgresql://pg.internal:6000/platform", target.jdbcUrl());
            assertEquals("ops", target.properties().getProperty("user"));
            assertEquals("hunter2", target.properties().getProperty("password"));
            assertFalse(target.display().contains("hunter2"), target.display());
        }

        @Test
        void flagUrlWinsOverEnvironment() {
            var target = backfill_codex_usage_cache.DatabaseTarget.resolve("postgres://a@flag/db1",
                    Map.of("DATABASE_URL", "postgres://b@env/db2", "PGHOST", "pg"));
            assertEquals("jdbc:postgresql://flag:5432/db1", target.jdbcUrl());
        }

        @Test
        void passesJdbcUrlThroughAndHidesItsPassword() {
            var target = backfill_codex_usage_cache.DatabaseTarget.parse(
                    "jdbc:postgresql://h:5433/db?user=u&password=topsecret", "DATABASE_URL");
            assertEquals("jdbc:postgresql://h:5433/db?user=u&password=topsecret", target.jdbcUrl());
            assertFalse(target.display().contains("topsecret"), target.display());
            assertEquals(List.of("topsecret"), target.secrets());
        }

        @Test
        void slicesRollupWindowIntoContiguousPieces() {
            OffsetDateTime from = OffsetDateTime.parse("2026-06-18T03:00:00Z");
            OffsetDateTime to = from.plusMinutes(10);

            var slices = backfill_codex_usage_cache.RollupWindow.slices(from, to, 250_000, 100_000);

            assertEquals(3, slices.size(), "250k rows at 100k per call");
            assertEquals(from, slices.get(0)[0]);
            assertEquals(to, slices.get(2)[1]);
            assertEquals(slices.get(0)[1], slices.get(1)[0], "slices touch");
            assertEquals(1, backfill_codex_usage_cache.RollupWindow.slices(from, to, 250_000, 0).size(), "0 = one call");
        }

        @Test
        void redactsSecretsFromEveryLine() {
            StringWriter sink = new StringWriter();
            var reporter = new backfill_codex_usage_cache.Reporter(new PrintWriter(sink));
            reporter.addSecrets(List.of("s3cr3t"));
            reporter.warn("connect failed for password s3cr3t");
            assertFalse(sink.toString().contains("s3cr3t"), sink.toString());
            assertTrue(sink.toString().contains("****"), sink.toString());
        }
    }

    // ================================================================ command line

    /** --cutoff, the given flags, and a database URL nothing listens on. */
    static String[] flags(String... extra) {
        List<String> args = new ArrayList<>(List.of("--cutoff", "2026-06-13T08:00:00Z"));
        args.addAll(List.of(extra));
        args.addAll(List.of("--database-url", UNREACHABLE_URL));
        return args.toArray(String[]::new);
    }

    static Stream<Arguments> badInputs() {
        String url = UNREACHABLE_URL;
        String pw = urlEncode(TestDatabase.APP_PASSWORD);
        return Stream.of(
                Arguments.of("missing --cutoff", Map.of(), new String[] {"--database-url", url}, "--cutoff"),
                Arguments.of("cutoff without offset", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00", "--database-url", url}, "no UTC offset"),
                Arguments.of("cutoff date only", Map.of(), new String[] {"--cutoff", "2026-06-13", "--database-url", url}, "RFC 3339"),
                Arguments.of("cutoff offset without colon", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00+0800", "--database-url", url}, "RFC 3339"),
                Arguments.of("cutoff month 13", Map.of(), new String[] {"--cutoff", "2026-13-01T00:00:00Z", "--database-url", url}, "not a valid date"),
                Arguments.of("cutoff in nanoseconds", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00.1234567Z", "--database-url", url}, "microseconds"),
                Arguments.of("cutoff in the future", Map.of(), new String[] {"--cutoff", "2999-01-01T00:00:00Z", "--database-url", url}, "must be in the past"),
                Arguments.of("cutoff given twice", Map.of(), flags("--cutoff", "2026-06-12T08:00:00Z"), "only once"),
                Arguments.of("workspace not a uuid", Map.of(), flags("--workspace-id", "acme"), "not a workspace UUID"),
                Arguments.of("workspace uuid in braces", Map.of(), flags("--workspace-id", "{aaaaaaaa-0000-4000-8000-000000000001}"), "not a workspace UUID"),
                Arguments.of("workspace empty", Map.of(), flags("--workspace-id", ""), "not a workspace UUID"),
                Arguments.of("batch size zero", Map.of(), flags("--batch-size", "0"), "--batch-size"),
                Arguments.of("batch size negative", Map.of(), flags("--batch-size", "-5"), "--batch-size"),
                Arguments.of("batch size huge", Map.of(), flags("--batch-size", "1000000"), "between 1 and"),
                Arguments.of("batch size beyond int", Map.of(), flags("--batch-size", "99999999999"), "--batch-size"),
                Arguments.of("batch size not a number", Map.of(), flags("--batch-size", "lots"), "--batch-size"),
                Arguments.of("sleep as bare number", Map.of(), flags("--sleep-between-batches", "5"), "not a duration"),
                Arguments.of("sleep with unknown unit", Map.of(), flags("--sleep-between-batches", "1x"), "not a duration"),
                Arguments.of("sleep negative", Map.of(), flags("--sleep-between-batches", "-1s"), "must not be negative"),
                Arguments.of("statement timeout zero", Map.of(), flags("--statement-timeout", "0"), "at least 1ms"),
                Arguments.of("rebuild-rollup yes", Map.of(), flags("--rebuild-rollup=yes"), "yes"),
                Arguments.of("execute with a value", Map.of(), flags("--execute=maybe"), "execute"),
                Arguments.of("unknown flag", Map.of(), flags("--dry-run"), "--dry-run"),
                Arguments.of("unknown format", Map.of(), flags("--format", "xml"), "xml"),
                Arguments.of("output dir missing", Map.of(), flags("--output", "/nonexistent/dir/summary.csv"), "directory does not exist"),
                Arguments.of("no database at all", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z"}, "no database given"),
                Arguments.of("empty DATABASE_URL", Map.of("DATABASE_URL", ""), new String[] {"--cutoff", "2026-06-13T08:00:00Z"}, "it is empty"),
                Arguments.of("PGHOST is a socket dir", Map.of("PGHOST", "/var/run/postgresql"), new String[] {"--cutoff", "2026-06-13T08:00:00Z"}, "Unix socket"),
                Arguments.of("mysql url", Map.of("DATABASE_URL", "mysql://backfill_app:" + pw + "@h/db"), new String[] {"--cutoff", "2026-06-13T08:00:00Z"}, "must start with postgres://"),
                Arguments.of("url unknown parameter", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z", "--database-url", "postgres://backfill_app:" + pw + "@h/db?fallback_application_name=x"}, "unknown parameter 'fallback_application_name'"),
                Arguments.of("url bad percent escape", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z", "--database-url", "postgres://backfill_app:" + pw + "%zz@h/db"}, "invalid %-escape"),
                Arguments.of("url with %00", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z", "--database-url", "postgres://backfill_app:" + pw + "%00@h/db"}, "%00"),
                Arguments.of("url port out of range", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z", "--database-url", "postgres://backfill_app:" + pw + "@h:99999/db"}, "port"),
                Arguments.of("url bad sslmode", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z", "--database-url", "postgres://backfill_app:" + pw + "@h/db?sslmode=maybe"}, "sslmode 'maybe'"),
                Arguments.of("url bad connect_timeout", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z", "--database-url", "postgres://backfill_app:" + pw + "@h/db?connect_timeout=soon"}, "connect_timeout"),
                Arguments.of("url unterminated ipv6", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z", "--database-url", "postgres://backfill_app:" + pw + "@[::1/db"}, "IPv6"),
                Arguments.of("jdbc url with userinfo", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z", "--database-url", "jdbc:postgresql://backfill_app:" + pw + "@h/db"}, "does not take user:password@"),
                Arguments.of("locked row retries too many", Map.of(), flags("--locked-row-retries", "99"), "--locked-row-retries"),
                Arguments.of("statement timeout beyond PostgreSQL", Map.of(), flags("--statement-timeout", "600h"), "must be at most"),
                Arguments.of("lock timeout beyond PostgreSQL", Map.of(), flags("--lock-timeout", "600h"), "must be at most"),
                Arguments.of("sleep that overflows", Map.of(), flags("--sleep-between-batches", "9999999999h"), "too large"),
                Arguments.of("rollup lock wait beyond a day", Map.of(), flags("--rollup-lock-wait", "2562047h"), "must be at most"),
                Arguments.of("cutoff with a forged log line", Map.of(), new String[] {"--cutoff", "2026-06-13T08:00:00Z\nINFO done: status=finished", "--database-url", url}, "--cutoff"),
                Arguments.of("output to a directory", Map.of(), flags("--output", "/"), "is a directory"),
                Arguments.of("ports do not match hosts", Map.of("PGHOST", "a,b,c", "PGPORT", "1,2"), new String[] {"--cutoff", "2026-06-13T08:00:00Z"}, "one port per host"));
    }

    @Nested
    @DisplayName("command line")
    class CommandLineRules {

        @ParameterizedTest(name = "{0}")
        @MethodSource("backfill_codex_usage_cacheTest#badInputs")
        void rejectsBadInputWithOneLineAndExitCode2(String name, Map<String, String> env, String[] args, String mention) {
            Result r = run(env, args);

            assertAll(
                    () -> assertEquals(2, r.exitCode(), r.describe()),
                    () -> assertEquals(1, r.errorLines().size(), "exactly one error line\n" + r.describe()),
                    () -> assertEquals(r.errorLines().get(0), r.stderr().lines().filter(l -> !l.contains(" WARN ")).reduce((a, b) -> b).orElse(""),
                            "the error is the last line\n" + r.describe()),
                    () -> assertTrue(r.errorLines().get(0).contains(mention), "mentions '" + mention + "'\n" + r.describe()),
                    () -> assertEquals("", r.stdout(), "nothing on stdout"),
                    () -> assertFalse(r.stderr().contains("\tat "), "no stack trace\n" + r.describe()));
        }

        @ParameterizedTest(name = "{0} -> rebuild {1}")
        @CsvSource(delimiter = '|', value = {"|true", "--rebuild-rollup|true", "--rebuild-rollup=true|true",
            "--rebuild-rollup=false|false", "--rebuild-rollup false|false", "--rebuild-rollup=FALSE|false"})
        void acceptsThreeSpellingsOfRebuildRollup(String flags, boolean expected) {
            backfill_codex_usage_cache command = new backfill_codex_usage_cache();
            List<String> args = new ArrayList<>(List.of("--cutoff", "2026-06-13T08:00:00Z"));
            if (flags != null) {
                args.addAll(List.of(flags.split(" ")));
            }
            backfill_codex_usage_cache.newCommandLine(command).parseArgs(args.toArray(String[]::new));
            assertEquals(expected, command.rebuildRollup, String.valueOf(flags));
        }

        @Test
        void defaultsMatchTheRunbook() {
            backfill_codex_usage_cache command = new backfill_codex_usage_cache();
            backfill_codex_usage_cache.newCommandLine(command).parseArgs("--cutoff", "2026-06-13T08:00:00Z");
            assertAll(
                    () -> assertFalse(command.execute, "dry-run by default"),
                    () -> assertEquals(1000, command.batchSize),
                    () -> assertEquals(Duration.ZERO, command.sleepBetweenBatches),
                    () -> assertTrue(command.rebuildRollup));
        }

        @Test
        void helpListsEveryFlagAndExitCodes() {
            Result r = run(Map.of(), "--help");
            assertEquals(0, r.exitCode());
            for (String flag : List.of("--cutoff", "--workspace-id", "--execute", "--batch-size",
                    "--sleep-between-batches", "--rebuild-rollup", "--database-url", "--format", "--output")) {
                assertTrue(r.stdout().contains(flag), flag + " in help");
            }
            assertTrue(r.stdout().contains("Exit codes"), r.stdout());
        }

        @ParameterizedTest(name = "no password fragment in the error for {0}")
        @CsvSource(delimiter = '|', value = {
            "raw slash|DATABASE_URL|postgres://app:hunter2/s3cr3tpw@127.0.0.1:1/db",
            "raw hash|DATABASE_URL|postgres://app:hunter2#s3cr3tpw@127.0.0.1:1/db",
            "raw question mark|DATABASE_URL|postgres://app:hunter2?s3cr3tpw=x@127.0.0.1:1/db",
            "raw question mark, no value|DATABASE_URL|postgres://app:hunter2?s3cr3tpw@127.0.0.1:1/db",
            "no scheme|DATABASE_URL|app:hunter2s3cr3tpw@127.0.0.1:1/db",
            "key=value string|DATABASE_URL|password=hunter2s3cr3tpw host=127.0.0.1",
            "URI in PGDATABASE|PGDATABASE|postgres://app:hunter2s3cr3tpw@127.0.0.1:1/db"})
        void malformedUrlsNeverEchoThePassword(String name, String variable, String value) {
            Result r = run(Map.of(variable, value), "--cutoff", "2026-06-13T08:00:00Z");

            assertEquals(2, r.exitCode(), r.describe());
            assertEquals(1, r.errorLines().size(), r.describe());
            assertFalse(r.all().contains("hunter2") || r.all().contains("s3cr3t"), r.describe());
        }

        @Test
        void argumentStartingWithAtIsNotReadAsAFile(@org.junit.jupiter.api.io.TempDir Path dir) throws IOException {
            Path file = dir.resolve("pgpass");
            Files.writeString(file, "127.0.0.1:5432:db:app:hunter2s3cr3tpw\n");

            Result r = run(Map.of(), "--cutoff", "@" + file, "--database-url", UNREACHABLE_URL);

            assertEquals(2, r.exitCode(), r.describe());
            assertFalse(r.all().contains("hunter2"), r.describe());
        }

        @Test
        void unreachableDatabaseIsOneLineAndExit1() {
            Result r = run(Map.of(), "--cutoff", "2026-06-13T08:00:00Z", "--database-url", UNREACHABLE_URL);

            assertEquals(1, r.exitCode(), r.describe());
            assertEquals(1, r.errorLines().size(), r.describe());
            assertTrue(r.errorLines().get(0).startsWith("Error: cannot connect to postgres://backfill_app@127.0.0.1:1/nowhere"),
                    r.describe());
        }
    }

    // ================================================================ against PostgreSQL: dry-run

    @Nested
    @DisplayName("dry-run against PostgreSQL")
    @Timeout(120)
    class DryRun extends WithDatabase {

        static final List<String> EXPECTED_GROUPS = List.of(
                "aaaaaaaa 2026-06-10 rows=2 before=6000 after=4500 removed=1500 clamped=0",
                "aaaaaaaa 2026-06-11 rows=1 before=100 after=0 removed=100 clamped=1",
                "aaaaaaaa 2026-06-13 rows=1 before=2000 after=1500 removed=500 clamped=0",
                "bbbbbbbb 2026-06-12 rows=1 before=3000 after=2000 removed=1000 clamped=0");

        @Test
        void summaryMatchesHandComputedGroups() throws Exception {
            KindsOfRows.seed(this);

            Result r = dryRunJson();

            assertEquals(0, r.exitCode(), r.describe());
            JsonNode doc = json(r);
            assertEquals(EXPECTED_GROUPS, groupLines(doc), r.describe());
            JsonNode totals = doc.get("totals");
            assertAll(
                    () -> assertEquals(5, totals.get("rows").asLong(), "total rows"),
                    () -> assertEquals(11100, totals.get("input_before").asLong(), "total input_before"),
                    () -> assertEquals(8000, totals.get("input_after").asLong(), "total input_after"),
                    () -> assertEquals(3100, totals.get("input_tokens_removed").asLong(), "total removed"),
                    () -> assertEquals(1, totals.get("clamped_rows").asLong(), "total clamped"),
                    () -> assertEquals("2026-06-10T10:00:00Z", doc.get("groups").get(0).get("first_created_at").asText()),
                    () -> assertEquals("2026-06-10T23:59:59.500Z", doc.get("groups").get(0).get("last_created_at").asText()));
        }

        @Test
        void cutoffWithNonUtcOffsetSelectsTheSameRows() throws Exception {
            KindsOfRows.seed(this);

            Result r = runAgainst(db, "--cutoff", "2026-06-13T16:00:00+08:00", "--format", "json");

            assertEquals(0, r.exitCode(), r.describe());
            assertEquals(EXPECTED_GROUPS, groupLines(json(r)));
            assertEquals("2026-06-13T08:00:00Z", json(r).get("cutoff").asText());
        }

        @Test
        void workspaceScopeKeepsOnlyThatWorkspace() throws Exception {
            KindsOfRows.seed(this);

            Result r = dryRunJson("--workspace-id", WORKSPACE_B.toString());

            assertEquals(List.of(EXPECTED_GROUPS.get(3)), groupLines(json(r)), r.describe());
        }

        @Test
        void tableAndCsvCarryTheSameNumbers() throws Exception {
            KindsOfRows.seed(this);

            Result table = runAgainst(db, "--cutoff", CUTOFF_TEXT);
            Result csv = runAgainst(db, "--cutoff", CUTOFF_TEXT, "--format", "csv");

            assertEquals(0, table.exitCode(), table.describe());
            for (String column : List.of("workspace_id", "date_utc", "rows", "input_before", "input_after",
                    "input_tokens_removed", "clamped_rows", "first_created_at", "last_created_at")) {
                assertTrue(table.stdout().contains(column), column + " in table\n" + table.stdout());
            }
            assertTrue(table.stdout().contains("TOTAL"), "totals line\n" + table.stdout());
            assertTrue(table.stdout().matches("(?s).*TOTAL.*\\|\\s+5\\s+\\|\\s+11100\\s+\\|\\s+8000\\s+\\|\\s+3100\\s+\\|\\s+1\\s+\\|.*"),
                    "totals in the table\n" + table.stdout());
            List<String> lines = csv.stdout().lines().toList();
            assertEquals("workspace_id,date_utc,rows,input_before,input_after,input_tokens_removed,clamped_rows,"
                    + "first_created_at,last_created_at", lines.get(0));
            assertEquals(5, lines.size(), "header + 4 groups, no totals row\n" + csv.stdout());
            assertTrue(lines.get(2).startsWith(WORKSPACE_A + ",2026-06-11,1,100,0,100,1,"), lines.get(2));
            assertTrue(csv.stderr().contains("candidate total: rows=5 input_before=11100"), csv.stderr());
        }

        @Test
        void outputFileReceivesTheSummary(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
            KindsOfRows.seed(this);
            Path file = dir.resolve("summary.csv");

            Result r = runAgainst(db, "--cutoff", CUTOFF_TEXT, "--format", "csv", "--output", file.toString());

            assertEquals(0, r.exitCode(), r.describe());
            assertEquals("", r.stdout());
            assertEquals(5, Files.readAllLines(file).size());
        }

        @Test
        void dryRunWritesNothing() throws Exception {
            KindsOfRows.seed(this);
            rollupEverything();
            Map<String, String> usageBefore = usageRows();
            Map<String, String> hourlyBefore = hourlyRows();

            Result r = dryRunJson();

            assertEquals(0, r.exitCode(), r.describe());
            assertEquals(usageBefore, usageRows(), "task_usage unchanged, every column of every row");
            assertEquals(hourlyBefore, hourlyRows(), "task_usage_hourly unchanged");
            assertEquals(0L, scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'backfill_codex_usage_cache%'",
                    Long.class), "no tool tables created by a dry-run");
            assertTrue(r.stderr().contains("re-run with --execute"), r.stderr());
        }

        @Test
        void unknownWorkspaceIsRefusedWithExit2() throws Exception {
            KindsOfRows.seed(this);

            Result r = dryRunJson("--workspace-id", "3f2c1a9e-0b7d-4c1e-9a51-2d6f8e4b7c10");

            assertEquals(2, r.exitCode(), r.describe());
            assertTrue(r.errorLines().get(0).contains("no agent in this database belongs to that workspace"), r.describe());
        }

        @Test
        void warnsWhenManyRowsWouldBeClamped() throws Exception {
            KindsOfRows.seed(this);

            Result r = dryRunJson();

            assertTrue(r.stderr().contains("1 of 5 eligible rows (20%) would be clamped to 0"), r.stderr());
        }

        @Test
        void nothingEligibleSaysSoAndExits0() {
            Result r = runAgainst(db, "--cutoff", CUTOFF_TEXT);

            assertEquals(0, r.exitCode(), r.describe());
            assertTrue(r.stderr().contains("no eligible Codex task_usage rows found"), r.stderr());
        }

        @Test
        void wrongPasswordIsOneLineAndExit1() {
            String url = TestDatabase.shared().appLibpqUrl(db).replace(urlEncode(TestDatabase.APP_PASSWORD), "wrong");

            Result r = run(Map.of("DATABASE_URL", url), "--cutoff", CUTOFF_TEXT);

            assertEquals(1, r.exitCode(), r.describe());
            assertEquals(1, r.errorLines().size(), r.describe());
            assertTrue(r.errorLines().get(0).contains("password authentication failed"), r.describe());
        }
    }

    // ================================================================ against PostgreSQL: preflight

    @Nested
    @DisplayName("preflight against PostgreSQL")
    @Timeout(120)
    class Preflight extends WithDatabase {

        @Test
        void missingUpdatedAtColumnIsNamed() throws Exception {
            sql("ALTER TABLE task_usage DROP COLUMN updated_at CASCADE");

            Result r = runAgainst(db, "--cutoff", CUTOFF_TEXT);

            assertEquals(1, r.exitCode(), r.describe());
            assertEquals(1, r.errorLines().size(), r.describe());
            assertTrue(r.errorLines().get(0).contains("task_usage.updated_at"), r.describe());
        }

        @Test
        void missingTablesAreListed() throws Exception {
            String empty = TestDatabase.shared().createEmptyDatabase("empty");
            try {
                Result r = runAgainst(empty, "--cutoff", CUTOFF_TEXT);

                assertEquals(1, r.exitCode(), r.describe());
                assertTrue(r.errorLines().get(0).contains("task_usage.id") && r.errorLines().get(0).contains("agent.workspace_id"),
                        r.describe());
            } finally {
                TestDatabase.shared().dropDatabase(empty);
            }
        }

        @Test
        void missingRollupFunctionIsRefusedUnlessRollupIsOff() throws Exception {
            sql("DROP FUNCTION rollup_task_usage_hourly_window(timestamptz, timestamptz)");

            Result withRollup = runAgainst(db, "--cutoff", CUTOFF_TEXT);
            Result withoutRollup = runAgainst(db, "--cutoff", CUTOFF_TEXT, "--rebuild-rollup=false");

            assertEquals(1, withRollup.exitCode(), withRollup.describe());
            assertTrue(withRollup.errorLines().get(0).contains("rollup_task_usage_hourly_window"), withRollup.describe());
            assertEquals(0, withoutRollup.exitCode(), withoutRollup.describe());
        }

        @Test
        void readOnlyRoleIsRefusedBeforeWriting() throws Exception {
            KindsOfRows.seed(this);
            sql("REVOKE UPDATE ON task_usage FROM backfill_app");
            Map<String, String> before = usageRows();

            Result dry = dryRunJson();
            Result exec = execute();

            assertEquals(0, dry.exitCode(), "a read-only role may still dry-run\n" + dry.describe());
            assertEquals(1, exec.exitCode(), exec.describe());
            assertTrue(exec.errorLines().get(0).contains("may not UPDATE task_usage"), exec.describe());
            assertEquals(before, usageRows(), "nothing written");
        }

        @Test
        void roleWithoutRollupExecuteIsRefusedBeforeWriting() throws Exception {
            KindsOfRows.seed(this);
            sql("REVOKE EXECUTE ON FUNCTION rollup_task_usage_hourly_window(timestamptz, timestamptz) FROM PUBLIC, backfill_app");
            Map<String, String> before = usageRows();

            Result exec = execute();

            assertEquals(1, exec.exitCode(), exec.describe());
            assertTrue(exec.errorLines().get(0).contains("may not EXECUTE rollup_task_usage_hourly_window"), exec.describe());
            assertEquals(before, usageRows(), "nothing written");
        }
    }

    // ================================================================ against PostgreSQL: execute

    @Nested
    @DisplayName("execute against PostgreSQL")
    @Timeout(180)
    class Execute extends WithDatabase {

        @Test
        void executeCorrectsOnlyEligibleRowsAndRebuildsRollup() throws Exception {
            KindsOfRows k = KindsOfRows.seed(this);
            rollupEverything();
            Map<String, String> before = usageRows();

            Result r = execute();

            assertEquals(0, r.exitCode(), r.describe());
            assertInputTokens(k.eligible, 700, "eligible");
            assertInputTokens(k.eligibleLegacyNull, 3800, "legacy NULL updated_at before cutoff");
            assertInputTokens(k.clamped, 0, "clamped");
            assertInputTokens(k.lastSecondBeforeCutoff, 1500, "last second before cutoff");
            assertInputTokens(k.otherWorkspace, 2000, "other workspace (unscoped run)");
            Map<String, String> after = usageRows();
            for (UUID id : k.untouched()) {
                assertEquals(before.get(id.toString()), after.get(id.toString()), "ineligible row " + id + " byte-identical");
            }
            assertNotNull(scalar("SELECT updated_at FROM task_usage WHERE id = ?", OffsetDateTime.class, k.eligibleLegacyNull),
                    "corrected legacy row gets updated_at");
            assertEquals(List.of(), hourlyMismatches(), "hourly rollup equals a fresh aggregation");
            assertEquals(0, eligibleCount());
            assertTrue(r.stderr().contains("rows_updated=5 input_tokens_removed=3100 clamped_rows=1"), r.stderr());
            assertTrue(r.stderr().contains("verification passed"), r.stderr());
        }

        @Test
        void secondExecuteChangesNothing() throws Exception {
            KindsOfRows.seed(this);
            rollupEverything();
            assertEquals(0, execute().exitCode());
            Map<String, String> usage = usageRows();
            Map<String, String> hourly = hourlyRows();

            Result second = execute();

            assertEquals(0, second.exitCode(), second.describe());
            assertTrue(second.stderr().contains("no eligible Codex task_usage rows found"), second.stderr());
            assertEquals(usage, usageRows(), "second run leaves task_usage identical");
            assertEquals(hourly, hourlyRows(), "second run leaves task_usage_hourly identical");
        }

        @Test
        void summaryIsPrintedBeforeWriting() throws Exception {
            KindsOfRows.seed(this);

            Result r = execute("--format", "json");

            assertEquals(0, r.exitCode(), r.describe());
            assertEquals(DryRun.EXPECTED_GROUPS, groupLines(json(r)), "execute prints the dry-run summary");
        }

        @Test
        void workspaceScopedExecuteLeavesOtherWorkspaces() throws Exception {
            KindsOfRows k = KindsOfRows.seed(this);
            rollupEverything();

            Result r = execute("--workspace-id", WORKSPACE_A.toString());

            assertEquals(0, r.exitCode(), r.describe());
            assertInputTokens(k.eligible, 700, "eligible in scope");
            assertInputTokens(k.otherWorkspace, 3000, "other workspace");
            assertEquals(List.of(), hourlyMismatches());
        }

        @ParameterizedTest(name = "batch size {0}")
        @ValueSource(ints = {1, 7, 1000})
        void everyBatchSizeCorrectsEveryRowOnce(int batchSize) throws Exception {
            List<UUID> ids = seedEligibleRows(20);
            rollupEverything();

            Result r = execute("--batch-size", String.valueOf(batchSize));

            assertEquals(0, r.exitCode(), r.describe());
            for (int i = 0; i < ids.size(); i++) {
                assertInputTokens(ids.get(i), (1000 + i) - (100 + i), "row " + i);
            }
            long batches = r.stderr().lines().filter(l -> l.contains(" INFO batch ")).count();
            assertEquals((20 + batchSize - 1) / batchSize, batches, "batch lines\n" + r.stderr());
            assertEquals(List.of(), hourlyMismatches());
        }

        @Test
        void rowChangedBetweenSummaryAndBatchIsSkipped() throws Exception {
            List<UUID> ids = seedEligibleRows(3);
            backfill_codex_usage_cache command = new backfill_codex_usage_cache();
            StringWriter log = new StringWriter();
            backfill_codex_usage_cache.newCommandLine(command).parseArgs("--cutoff", CUTOFF_TEXT, "--execute");
            command.out = new backfill_codex_usage_cache.Reporter(new PrintWriter(log));
            var target = backfill_codex_usage_cache.DatabaseTarget.parse(TestDatabase.shared().appLibpqUrl(db), "test");

            try (Connection conn = target.connect()) {
                var totals = new backfill_codex_usage_cache.Totals(3, 0, 0, 0, 0, null, null);
                var backfill = command.new Backfill(conn, totals);
                backfill.ensureRunsTable();
                backfill.claimRun();
                backfill.buildQueue();
                // Ingestion upserts the row after the tool read it: new count, updated_at = now().
                sql("UPDATE task_usage SET input_tokens = 4242, updated_at = now() WHERE id = ?", ids.get(1));
                backfill.writeBatch(0, 1, backfill.readQueueBatch(0));

                assertEquals(2, backfill.rowsUpdated, "rows updated\n" + log);
                assertEquals(1, backfill.skippedChanged, "rows skipped as changed\n" + log);
            }
            assertInputTokens(ids.get(0), 900, "untouched by ingestion");
            assertInputTokens(ids.get(1), 4242, "ingestion's value kept, not corrected");
            assertInputTokens(ids.get(2), 900, "untouched by ingestion");
        }

        @Test
        void lockedRowIsRetriedOnceReleased() throws Exception {
            List<UUID> ids = seedEligibleRows(5);
            rollupEverything();
            Connection holder = TestDatabase.shared().adminConnection(db);
            holder.setAutoCommit(false);
            try (PreparedStatement ps = holder.prepareStatement("SELECT 1 FROM task_usage WHERE id = ? FOR UPDATE")) {
                ps.setObject(1, ids.get(2));
                ps.executeQuery().close();
            }
            CompletableFuture<Void> release = CompletableFuture.runAsync(() -> {
                try {
                    Thread.sleep(1500);
                    holder.rollback();
                    holder.close();
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });

            Result r = execute("--locked-row-retries", "5");
            release.get(10, TimeUnit.SECONDS);

            assertEquals(0, r.exitCode(), r.describe());
            assertTrue(r.stderr().contains("locked by another session"), r.stderr());
            assertInputTokens(ids.get(2), 900, "locked row corrected after release");
            assertEquals(List.of(), hourlyMismatches());
        }

        @Test
        void rowLockedForTheWholeRunIsReportedAndExits1() throws Exception {
            List<UUID> ids = seedEligibleRows(5);
            rollupEverything();
            try (Connection holder = TestDatabase.shared().adminConnection(db)) {
                holder.setAutoCommit(false);
                try (PreparedStatement ps = holder.prepareStatement("SELECT 1 FROM task_usage WHERE id = ? FOR UPDATE")) {
                    ps.setObject(1, ids.get(0));
                    ps.executeQuery().close();
                }

                Result r = execute("--locked-row-retries", "1");

                assertEquals(1, r.exitCode(), r.describe());
                assertTrue(r.stderr().contains("left_locked=1"), r.stderr());
                assertTrue(r.stderr().contains("remaining_eligible=1"), r.stderr());
                holder.rollback();
            }
            assertInputTokens(ids.get(0), 1000, "the locked row was not corrected");
            assertInputTokens(ids.get(1), 900, "the others were");
            assertEquals(List.of(), hourlyMismatches());

            Result rerun = execute();
            assertEquals(0, rerun.exitCode(), rerun.describe());
            assertInputTokens(ids.get(0), 900, "corrected by the re-run");
        }

        @Test
        void busyAdvisoryLockLeavesRollupPendingUntilRerun() throws Exception {
            List<UUID> ids = seedEligibleRows(10);
            rollupEverything();
            Result r;
            try (Connection holder = TestDatabase.shared().adminConnection(db)) {
                try (Statement st = holder.createStatement()) {
                    st.execute("SELECT pg_advisory_lock(4246)");
                }

                r = execute("--rollup-lock-wait", "1s");
            }

            assertEquals(1, r.exitCode(), r.describe());
            assertTrue(r.stderr().contains("advisory lock 4246 is busy"), r.stderr());
            assertFalse(hourlyMismatches().isEmpty(), "corrected rows are not rolled up yet");
            assertInputTokens(ids.get(0), 900, "rows were corrected");

            Result rerun = execute();

            assertEquals(0, rerun.exitCode(), rerun.describe());
            assertTrue(rerun.stderr().contains("left its rollup incomplete"), rerun.stderr());
            assertEquals(List.of(), hourlyMismatches(), "re-run finished the rollup");
        }

        @Test
        void rebuildRollupFalseNeverCallsRollupNorTakesLock() throws Exception {
            seedEligibleRows(10);
            rollupEverything();
            Map<String, String> hourlyBefore = hourlyRows();
            Result r;
            try (Connection holder = TestDatabase.shared().adminConnection(db)) {
                try (Statement st = holder.createStatement()) {
                    st.execute("SELECT pg_advisory_lock(4246)");
                }

                r = execute("--rebuild-rollup=false", "--rollup-lock-wait", "1s");
            }

            assertEquals(0, r.exitCode(), r.describe());
            assertEquals(0, eligibleCount());
            assertEquals(hourlyBefore, hourlyRows(), "task_usage_hourly untouched");
            assertFalse(r.stderr().contains("advisory lock"), r.stderr());
            assertTrue(r.stderr().contains("rollup not rebuilt"), r.stderr());
        }

        @Test
        void secondConcurrentExecuteIsRefusedAndFirstEndsExact() throws Exception {
            seedEligibleRows(60);
            rollupEverything();
            ToolProcess first = new ToolProcess(db, "--cutoff", CUTOFF_TEXT, "--execute", "--batch-size", "2",
                    "--sleep-between-batches", "100ms");
            first.waitFor("INFO batch 3/30", Duration.ofSeconds(60));

            Result second = execute();

            assertEquals(1, second.exitCode(), second.describe());
            assertTrue(second.errorLines().get(0).contains("another --execute is in progress"), second.describe());
            assertTrue(first.process.waitFor(60, TimeUnit.SECONDS), "first run finished");
            assertEquals(0, first.stop(false), first.lastOutput);
            assertEquals(0, eligibleCount());
            assertEquals(List.of(), hourlyMismatches(), "the refused run did not disturb the rollup");
        }

        @Test
        void laterCutoffThanAnEarlierRunIsRefusedUnlessAllowed() throws Exception {
            seedEligibleRows(5);
            assertEquals(0, execute().exitCode());
            String later = "2026-06-20T00:00:00Z";
            UUID writtenAfterFirstCutoff = seedUsageRow(WORKSPACE_A, "codex", 800, 300, "2026-06-15T00:00:00Z",
                    "2026-06-15T00:00:00Z");

            Result refused = runAgainst(db, "--cutoff", later, "--execute");
            Result allowed = runAgainst(db, "--cutoff", later, "--execute", "--allow-later-cutoff");

            assertEquals(2, refused.exitCode(), refused.describe());
            assertTrue(refused.errorLines().get(0).contains("--allow-later-cutoff"), refused.describe());
            assertEquals(0, allowed.exitCode(), allowed.describe());
            assertInputTokens(writtenAfterFirstCutoff, 500, "corrected only once explicitly allowed");
        }

        @Test
        void signalBeforeAnyWriteExitsAtOnceWithALine() throws Exception {
            seedEligibleRows(10);
            rollupEverything();
            try (Connection holder = TestDatabase.shared().adminConnection(db)) {
                try (Statement st = holder.createStatement()) {
                    st.execute("SELECT pg_advisory_lock(4246)");
                }
                assertEquals(1, execute("--rollup-lock-wait", "1s").exitCode(), "leaves a pending rollup");
                // The re-run first rebuilds that pending rollup: it waits for the lock before writing.
                ToolProcess p = new ToolProcess(db, "--cutoff", CUTOFF_TEXT, "--execute");
                p.waitFor("advisory lock 4246 is busy", Duration.ofSeconds(60));

                int exit = p.stop(false);

                assertEquals(1, exit, p.lastOutput);
                assertTrue(p.lastOutput.contains("SIGTERM received before any row was written"), p.lastOutput);
            }
            assertEquals(0, execute().exitCode(), "a re-run finishes");
            assertEquals(List.of(), hourlyMismatches());
        }

        @Test
        void sigtermStopsAfterCurrentBatchAndRerunFinishes() throws Exception {
            seedEligibleRows(60);
            rollupEverything();
            ToolProcess p = new ToolProcess(db, "--cutoff", CUTOFF_TEXT, "--execute", "--batch-size", "2",
                    "--sleep-between-batches", "100ms");
            p.waitFor("INFO batch 3/30", Duration.ofSeconds(60));

            int exit = p.stop(false); // SIGTERM
            String log = p.lastOutput;

            assertEquals(1, exit, log);
            assertTrue(log.contains("SIGTERM received"), log);
            assertTrue(log.contains("status=stopped"), log);
            long corrected = 60 - eligibleCount();
            assertTrue(corrected > 0 && corrected < 60, "partly done: " + corrected + "\n" + log);
            assertEquals(List.of(), hourlyMismatches(), "what was written is rolled up");

            Result rerun = execute();

            assertEquals(0, rerun.exitCode(), rerun.describe());
            assertEquals(0, eligibleCount());
            assertEquals(List.of(), hourlyMismatches());
            assertEquals(60 * 900L, scalar("SELECT sum(input_tokens)::bigint FROM task_usage", Long.class),
                    "every row corrected exactly once");
        }

        @Test
        void sigkillBeforeRollupIsRepairedByPlainRerun() throws Exception {
            seedEligibleRows(30);
            rollupEverything();
            try (Connection holder = TestDatabase.shared().adminConnection(db)) {
                try (Statement st = holder.createStatement()) {
                    st.execute("SELECT pg_advisory_lock(4246)");
                }
                ToolProcess p = new ToolProcess(db, "--cutoff", CUTOFF_TEXT, "--execute", "--batch-size", "10");
                // All batches are written and the tool waits for the rollup lock: kill it there.
                p.waitFor("advisory lock 4246 is busy", Duration.ofSeconds(60));
                p.stop(true);
            }
            assertEquals(0, eligibleCount(), "all rows were corrected before the kill");
            assertFalse(hourlyMismatches().isEmpty(), "the dead run left the rollup stale");

            Result rerun = execute();

            assertEquals(0, rerun.exitCode(), rerun.describe());
            assertTrue(rerun.stderr().contains("left its rollup incomplete"), rerun.stderr());
            assertEquals(List.of(), hourlyMismatches(), "plain re-run leaves task_usage_hourly exact");
            assertEquals(30 * 900L, scalar("SELECT sum(input_tokens)::bigint FROM task_usage", Long.class), "nothing subtracted twice");
        }

        @Test
        void sigkillMidBatchesThenRerunEndsExact() throws Exception {
            seedEligibleRows(60);
            rollupEverything();
            ToolProcess p = new ToolProcess(db, "--cutoff", CUTOFF_TEXT, "--execute", "--batch-size", "2",
                    "--sleep-between-batches", "100ms");
            p.waitFor("INFO batch 4/30", Duration.ofSeconds(60));

            p.stop(true);
            assertFalse(hourlyMismatches().isEmpty(), "the dead run left the rollup stale");
            Result rerun = execute();

            assertEquals(0, rerun.exitCode(), rerun.describe());
            assertEquals(0, eligibleCount());
            assertEquals(List.of(), hourlyMismatches());
            assertEquals(60 * 900L, scalar("SELECT sum(input_tokens)::bigint FROM task_usage", Long.class), "nothing subtracted twice");
        }
    }

    @Nested
    @DisplayName("faults against PostgreSQL")
    @Timeout(180)
    class Faults extends WithDatabase {

        /** Each row either kept the value another writer gave it, or was corrected exactly once. */
        void assertEveryRowCorrectedOnceOrLeftToIngestion(List<UUID> ids, Map<UUID, Long> ingested) throws SQLException {
            for (int i = 0; i < ids.size(); i++) {
                UUID id = ids.get(i);
                long expected = ingested.containsKey(id) ? ingested.get(id) : 900;
                assertInputTokens(id, expected, ingested.containsKey(id) ? "ingested" : "corrected once");
            }
        }

        @Test
        void terminatedBackendStopsWithOneLineAndRerunFinishes() throws Exception {
            List<UUID> ids = seedEligibleRows(60);
            rollupEverything();
            ToolProcess p = new ToolProcess(db, "--cutoff", CUTOFF_TEXT, "--execute", "--batch-size", "2",
                    "--sleep-between-batches", "100ms");
            p.waitFor("INFO batch 3/30", Duration.ofSeconds(60));

            sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    + "WHERE datname = ? AND application_name = 'backfill_codex_usage_cache'", db);
            assertTrue(p.process.waitFor(60, TimeUnit.SECONDS), "the tool stopped by itself");
            int exit = p.stop(false);
            String log = p.lastOutput;

            assertEquals(1, exit, log);
            List<String> errors = log.lines().filter(l -> l.startsWith("Error: ")).toList();
            assertEquals(1, errors.size(), log);
            assertTrue(errors.get(0).contains("re-running the same command is safe"), log);

            Result rerun = execute();

            assertEquals(0, rerun.exitCode(), rerun.describe());
            assertEveryRowCorrectedOnceOrLeftToIngestion(ids, Map.of());
            assertEquals(List.of(), hourlyMismatches(), "the re-run rolled up the dead run's window too");
        }

        @Test
        void statementTimeoutIsRetriedThenStopsWithOneLine() throws Exception {
            List<UUID> ids = seedEligibleRows(6);
            rollupEverything();
            // A batch containing this row takes 2 s: longer than the tool's statement timeout.
            sql("CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    + "IF NEW.id = '" + ids.get(5) + "' THEN PERFORM pg_sleep(2); END IF; RETURN NEW; END $$");
            sql("CREATE TRIGGER slow_row BEFORE UPDATE ON task_usage FOR EACH ROW EXECUTE FUNCTION slow_row()");

            Result r = execute("--batch-size", "5", "--statement-timeout", "300ms");

            assertEquals(1, r.exitCode(), r.describe());
            assertEquals(1, r.errorLines().size(), r.describe());
            assertTrue(r.errorLines().get(0).contains("statement timeout") && r.errorLines().get(0).contains("57014"),
                    r.describe());
            assertEquals(3, r.stderr().lines().filter(l -> l.contains("retrying in")).count(), "bounded retries\n" + r.stderr());
            assertInputTokens(ids.get(5), 1005, "the slow batch rolled back");
            assertEquals("failed", scalar("SELECT status FROM backfill_codex_usage_cache_runs", String.class));
            assertEquals(0L, scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'backfill_codex_usage_cache_queue%'",
                    Long.class), "the failed run dropped its work queue");

            sql("DROP TRIGGER slow_row ON task_usage");
            Result rerun = execute();

            assertEquals(0, rerun.exitCode(), rerun.describe());
            for (UUID id : ids) {
                assertInputTokens(id, 900, "corrected exactly once");
            }
            assertEquals(List.of(), hourlyMismatches());
        }

        @Test
        void concurrentIngestionIsNeverAlteredNorSubtractedTwice() throws Exception {
            List<UUID> ids = seedEligibleRows(200);
            rollupEverything();
            OffsetDateTime ingestionStarted = scalar("SELECT clock_timestamp()", OffsetDateTime.class);
            Map<UUID, Long> ingested = new java.util.concurrent.ConcurrentHashMap<>();
            java.util.concurrent.atomic.AtomicBoolean running = new java.util.concurrent.atomic.AtomicBoolean(true);
            CompletableFuture<Integer> ingestion = CompletableFuture.supplyAsync(() -> {
                int writes = 0;
                java.util.Random random = new java.util.Random(7);
                try (Connection c = TestDatabase.shared().adminConnection(db)) {
                    while (running.get()) {
                        UUID id = ids.get(random.nextInt(ids.size()));
                        long value = 50_000 + random.nextInt(1000);
                        // The platform's upsert: new counts (cached input already excluded) and updated_at.
                        try (PreparedStatement ps = c.prepareStatement(
                                "UPDATE task_usage SET input_tokens = ?, updated_at = now() WHERE id = ?")) {
                            ps.setLong(1, value);
                            ps.setObject(2, id);
                            ps.executeUpdate();
                        }
                        ingested.put(id, value);
                        try (PreparedStatement ps = c.prepareStatement("INSERT INTO task_usage (task_id, provider, model, "
                                + "input_tokens, cache_read_tokens) SELECT task_id, 'codex', 'new-' || gen_random_uuid(), 10, 5 "
                                + "FROM task_usage WHERE id = ?")) {
                            ps.setObject(1, id);
                            ps.executeUpdate();
                        }
                        writes++;
                        Thread.sleep(2);
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
                return writes;
            });

            Result r = execute("--batch-size", "3", "--sleep-between-batches", "5ms");
            running.set(false);
            int writes = ingestion.get(30, TimeUnit.SECONDS);

            assertEquals(0, r.exitCode(), r.describe());
            assertTrue(writes > 20 && !ingested.isEmpty(), "ingestion ran during the tool: " + writes + " writes");
            assertEveryRowCorrectedOnceOrLeftToIngestion(ids, ingested);
            assertEquals(0L, scalar("SELECT count(*) FROM task_usage WHERE model LIKE 'new-%' AND input_tokens <> 10",
                    Long.class), "rows ingested during the run are untouched");
            // The platform's own rollup tick covers what ingestion wrote; after it the table is exact.
            sql("SELECT rollup_task_usage_hourly_window(?, clock_timestamp())", ingestionStarted);
            assertEquals(List.of(), hourlyMismatches());
        }

        @Test
        void worksBehindTransactionPoolingPgBouncer(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
            Path binary = Stream.of("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer").map(Path::of)
                    .filter(Files::isExecutable).findFirst().orElse(null);
            org.junit.jupiter.api.Assumptions.assumeTrue(binary != null,
                    "pgbouncer is not installed (apt-get install pgbouncer); .ci/run installs it");
            List<UUID> ids = seedEligibleRows(40);
            rollupEverything();
            TestDatabase pg = TestDatabase.shared();
            int port;
            try (java.net.ServerSocket socket = new java.net.ServerSocket(0)) {
                port = socket.getLocalPort();
            }
            Files.writeString(dir.resolve("users.txt"), "\"" + TestDatabase.APP_USER + "\" \""
                    + TestDatabase.APP_PASSWORD + "\"\n");
            Files.writeString(dir.resolve("pgbouncer.ini"), String.join("\n",
                    "[databases]",
                    db + " = host=" + pg.host() + " port=" + pg.port() + " dbname=" + db,
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    "listen_port = " + port,
                    "unix_socket_dir =",
                    "auth_type = plain",
                    "auth_file = " + dir.resolve("users.txt"),
                    "pool_mode = transaction",
                    "default_pool_size = 2",
                    "ignore_startup_parameters = extra_float_digits",
                    ""));
            dir.toFile().setReadable(true, false);
            dir.toFile().setExecutable(true, false);
            for (String f : List.of("users.txt", "pgbouncer.ini")) {
                dir.resolve(f).toFile().setReadable(true, false);
            }
            List<String> command = new ArrayList<>(List.of(binary.toString()));
            if ("root".equals(System.getProperty("user.name"))) {
                command.addAll(List.of("-u", "nobody")); // pgbouncer refuses to run as root
            }
            command.add(dir.resolve("pgbouncer.ini").toString());
            Process bouncer = new ProcessBuilder(command).redirectErrorStream(true)
                    .redirectOutput(dir.resolve("stdout.txt").toFile()).start();
            try {
                String url = "postgres://" + TestDatabase.APP_USER + ":" + urlEncode(TestDatabase.APP_PASSWORD)
                        + "@127.0.0.1:" + port + "/" + db + "?sslmode=disable";
                Result r = null;
                for (int attempt = 0; attempt < 50; attempt++) {
                    r = run(Map.of("DATABASE_URL", url), "--cutoff", CUTOFF_TEXT, "--execute", "--batch-size", "3");
                    if (r.exitCode() != 1 || !r.stderr().contains("cannot connect")) {
                        break;
                    }
                    Thread.sleep(100);
                }

                assertEquals(0, r.exitCode(), r.describe() + "\n" + Files.readString(dir.resolve("stdout.txt")));
                assertEveryRowCorrectedOnceOrLeftToIngestion(ids, Map.of());
                assertEquals(List.of(), hourlyMismatches());
                Result again = run(Map.of("DATABASE_URL", url), "--cutoff", CUTOFF_TEXT, "--execute");
                assertEquals(0, again.exitCode(), again.describe());
                assertTrue(again.stderr().contains("no eligible"), again.stderr());
            } finally {
                bouncer.destroy();
                bouncer.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    @Nested
    @DisplayName("realistic data against PostgreSQL")
    @Timeout(300)
    class RealisticData extends WithDatabase {

        @Test
        void sampleDataSetEndsExactAfterExecute() throws Exception {
            OffsetDateTime cutoff = OffsetDateTime.now(ZoneOffset.UTC).minusDays(1).withNano(0);
            TestDatabase.shared().seedSampleData(db, 20_000, cutoff, 8);
            long eligible = scalar("SELECT count(*) FROM task_usage WHERE provider = 'codex' AND cache_read_tokens > 0 "
                    + "AND input_tokens > 0 AND COALESCE(updated_at, created_at) < ?", Long.class, cutoff);
            Map<String, String> before = usageRows();

            Result r = runAgainst(db, "--cutoff", cutoff.toInstant().toString(), "--execute", "--format", "json");

            assertEquals(0, r.exitCode(), r.describe().lines().limit(40).reduce("", (a, b) -> a + b + "\n"));
            assertTrue(eligible > 1000, "sample data has eligible rows: " + eligible);
            assertEquals(eligible, json(r).get("totals").get("rows").asLong(), "summary counts every eligible row");
            Map<String, String> after = usageRows();
            long changed = before.keySet().stream().filter(id -> !before.get(id).equals(after.get(id))).count();
            assertEquals(eligible, changed, "exactly the eligible rows changed");
            assertEquals(List.of(), hourlyMismatches());
        }
    }
}
