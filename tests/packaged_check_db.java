///usr/bin/env jbang "$0" "$@" ; exit $?
//JAVA 17+
//SOURCES TestDatabase.java
//DESCRIPTION Seeded PostgreSQL for tests/packaged_check.sh: prints `cutoff=<RFC 3339>`, then the
//DESCRIPTION app's postgres:// URL as the last stdout line, and keeps the server up until stdin closes.

import java.io.IOException;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.temporal.ChronoUnit;

/**
 * Starts {@link TestDatabase#shared()} (TEST_DATABASE_URL, a container or an embedded server),
 * creates and seeds one database, and hands its URL to the calling shell script.
 *
 * <p>Usage: {@code ./jbang tests/packaged_check_db.java [ROWS]} (default 5000), run from the
 * repository root. It exits when its standard input reaches end of file or on SIGTERM; the
 * shutdown hook of {@link TestDatabase} then stops the server or drops the database.
 */
public class packaged_check_db {

    public static void main(String[] args) throws IOException {
        int rows = args.length > 0 ? Integer.parseInt(args[0]) : 5000;
        OffsetDateTime cutoff = OffsetDateTime.now(ZoneOffset.UTC).truncatedTo(ChronoUnit.SECONDS).minusDays(1);

        TestDatabase server = TestDatabase.shared();
        String db = server.createDatabase("packaged_check");
        long seeded = server.seedSampleData(db, rows, cutoff, 4);
        System.err.printf("packaged_check_db: %s, database %s, %d task_usage rows, cutoff %s%n",
                server.describe(), db, seeded, cutoff);

        System.out.println("cutoff=" + cutoff);
        System.out.println(server.appLibpqUrl(db));
        System.out.flush();

        while (System.in.read() != -1) {
            // Only end of input matters.
        }
        System.exit(0);
    }
}
