///usr/bin/env jbang "$0" "$@" ; exit $?
//JAVA 17+
//SOURCES ../backfill_codex_usage_cache.java
//SOURCES TestDatabase.java
//DESCRIPTION The main job on realistic data: starts an embedded PostgreSQL (or uses TEST_DATABASE_URL),
//DESCRIPTION loads the platform schema and a generated month of usage, then runs the real tool:
//DESCRIPTION dry-run, --execute, and the verification dry-run. Usage: demo.java [ROWS [WORKSPACES]]

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.Map;

/** Shows the tool end to end on a throwaway database holding realistic sample data. */
public class demo {

    public static void main(String... args) throws Exception {
        int rows = args.length > 0 ? Integer.parseInt(args[0]) : 60_000;
        int workspaces = args.length > 1 ? Integer.parseInt(args[1]) : 8;
        OffsetDateTime cutoff = OffsetDateTime.now(ZoneOffset.UTC).minusDays(1).truncatedTo(ChronoUnit.SECONDS);
        String cutoffText = DateTimeFormatter.ISO_INSTANT.format(cutoff);

        TestDatabase pg = TestDatabase.shared();
        say("database server: " + pg.describe());
        String db = pg.createDatabase("demo");
        long seeded = pg.seedSampleData(db, rows, cutoff, workspaces);
        say("loaded the platform schema and " + seeded + " task_usage rows over " + workspaces
                + " workspaces into database " + db + "; the ingestion fix 'deployed' at " + cutoffText);
        Map<String, String> env = Map.of("DATABASE_URL", pg.appLibpqUrl(db));

        say("1. dry-run (the default): what would change, per workspace and UTC day");
        int dryRun = tool(env, "--cutoff", cutoffText);

        Path summary = Files.createTempFile("backfill-summary", ".csv");
        say("2. --execute (the same summary goes to " + summary + " as CSV this time)");
        int execute = tool(env, "--cutoff", cutoffText, "--execute", "--batch-size", "1000",
                "--format", "csv", "--output", summary.toString());

        say("3. verification: the same dry-run again finds nothing");
        int verify = tool(env, "--cutoff", cutoffText);

        String mismatch = hourlyMismatches(pg, db);
        say("task_usage_hourly vs a fresh aggregation of task_usage: " + mismatch);
        pg.dropDatabase(db);
        boolean ok = dryRun == 0 && execute == 0 && verify == 0 && mismatch.startsWith("identical");
        say(ok ? "demo finished: every step exited 0 and the rollup is exact"
                : "demo FAILED: exit codes " + dryRun + "/" + execute + "/" + verify + ", rollup " + mismatch);
        System.exit(ok ? 0 : 1);
    }

    static int tool(Map<String, String> env, String... args) {
        System.out.println();
        System.out.println("$ backfill_codex_usage_cache " + String.join(" ", args));
        backfill_codex_usage_cache command = new backfill_codex_usage_cache();
        command.environment = env;
        int code = backfill_codex_usage_cache.newCommandLine(command).execute(args);
        System.out.flush();
        System.err.flush();
        System.out.println("(exit code " + code + ")");
        return code;
    }

    static String hourlyMismatches(TestDatabase pg, String db) throws Exception {
        try (Connection conn = pg.adminConnection(db); Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT count(*) FROM (" + TestDatabase.HOURLY_MISMATCH_SQL + ") m")) {
            rs.next();
            long count = rs.getLong(1);
            return count == 0 ? "identical" : count + " bucket(s) differ";
        }
    }

    static void say(String text) {
        System.out.println();
        System.out.println("== " + text);
    }
}
