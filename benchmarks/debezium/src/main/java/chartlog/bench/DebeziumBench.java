package chartlog.bench;

import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Json;
import java.io.BufferedWriter;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * A benchmark peer of chartlog, not part of it: the Debezium embedded engine (its default,
 * asynchronous engine and the connector's default settings) reads a backlog of change events of
 * one table from PostgreSQL (pgoutput) or MariaDB/MySQL (binlog), serialises every event as JSON
 * (Debezium's JsonConverter, the envelope with before/after/source/op) and writes it as one line
 * to a local file; offsets in a file of its own (FileOffsetBackingStore). It stops once it has
 * written --rows events of that table, the file flushed and fsynced, and prints one line of JSON
 * with its timings (epoch milliseconds, so the caller can line them up with the spawn time),
 * the events written and the peak RSS of the JVM (VmHWM).
 *
 * <pre>
 *   java -jar target/debezium-bench.jar --connector postgres|mysql|mariadb --host H --port P --user U
 *        --database DB --table SCHEMA.TABLE --rows N --work-dir DIR [--slot S --publication P]
 *        [--server-id ID] [--json-schemas false] [--timeout-s 600]
 *   java -jar target/mariadb/debezium-bench.jar --connector mariadb …   (built with -Pmariadb, see pom.xml)
 * </pre>
 *
 * The password, if any, comes from the environment (DEBEZIUM_BENCH_PASSWORD), never the command
 * line. Run it first with --rows 1 on the table holding one row (the snapshot: slot, offsets and
 * schema history made, like a deployment that already runs), then again after the backlog: it
 * resumes from its offsets and streams the backlog. Exit codes: 0 done, 1 the engine failed,
 * 2 bad arguments, 3 timed out before --rows events.
 */
public final class DebeziumBench {
  private DebeziumBench() {}

  private static Map<String, String> parseArgs(String[] argv) {
    Map<String, String> a = new HashMap<>();
    for (int i = 0; i < argv.length; i++) {
      if (!argv[i].startsWith("--") || i + 1 >= argv.length) usage("expected --name value pairs, got \"" + argv[i] + "\"");
      a.put(argv[i].substring(2), argv[++i]);
    }
    return a;
  }

  private static void usage(String why) {
    System.err.println("error: " + why);
    System.err.println("usage: --connector postgres|mysql|mariadb --host H --port P --user U --database DB --table SCHEMA.TABLE --rows N --work-dir DIR"
        + " [--slot S --publication P] [--server-id ID] [--json-schemas true|false] [--timeout-s S]");
    System.exit(2);
  }

  private static String need(Map<String, String> a, String name) {
    String v = a.get(name);
    if (v == null || v.isEmpty()) usage("--" + name + " is required");
    return v;
  }

  /** Peak resident set of this process in KiB, from /proc (Linux), or -1. */
  private static long peakRssKiB() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith("VmHWM:")) return Long.parseLong(line.replaceAll("[^0-9]", ""));
      }
    } catch (IOException | NumberFormatException e) {
      // not Linux: reported as -1
    }
    return -1;
  }

  public static void main(String[] argv) throws Exception {
    final long mainAt = System.currentTimeMillis();
    // slf4j-simple: Debezium's warnings and errors on stderr (its INFO lines only with DEBEZIUM_BENCH_LOG=info).
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", System.getenv().getOrDefault("DEBEZIUM_BENCH_LOG", "warn"));
    System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
    // Debezium 3's metrics collector warns once per change event it cannot queue for its statistics
    // when events come faster than it samples them (a backlog): thousands of lines of noise.
    System.setProperty("org.slf4j.simpleLogger.log.io.debezium.metrics.stats.MeasurementCollector", "error");
    final long jvmStartAt = ManagementFactory.getRuntimeMXBean().getStartTime();
    Map<String, String> a = parseArgs(argv);
    final String connector = need(a, "connector");
    final long rows = Long.parseLong(need(a, "rows"));
    final Path work = Path.of(need(a, "work-dir"));
    final String table = need(a, "table");
    final String database = need(a, "database");
    final long timeoutS = Long.parseLong(a.getOrDefault("timeout-s", "600"));
    Files.createDirectories(work);

    // Topic names: <topic.prefix>.<schema or database>.<table>.
    final String prefix = "bench";
    final String topic = prefix + "." + table;

    Properties p = new Properties();
    p.setProperty("name", "debezium-bench");
    p.setProperty("topic.prefix", prefix);
    p.setProperty("offset.storage", "org.apache.kafka.connect.storage.FileOffsetBackingStore");
    p.setProperty("offset.storage.file.filename", work.resolve("offsets.dat").toString());
    p.setProperty("database.hostname", need(a, "host"));
    p.setProperty("database.port", need(a, "port"));
    p.setProperty("database.user", need(a, "user"));
    String password = System.getenv("DEBEZIUM_BENCH_PASSWORD");
    if (password != null) p.setProperty("database.password", password);
    p.setProperty("table.include.list", table);
    // Debezium's JsonConverter, with or without the schema in every event (its default: with).
    String schemas = a.getOrDefault("json-schemas", "true");
    p.setProperty("converter.schemas.enable", schemas);
    switch (connector) {
      case "postgres" -> {
        p.setProperty("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
        p.setProperty("plugin.name", "pgoutput");
        p.setProperty("database.dbname", database);
        p.setProperty("slot.name", need(a, "slot"));
        p.setProperty("publication.name", need(a, "publication"));
        // The publication exists (the benchmark's, shared with chartlog and pg_recvlogical).
        p.setProperty("publication.autocreate.mode", "disabled");
      }
      case "mysql", "mariadb" -> {
        // By name: the jar built with the `mariadb` profile has only the MariaDB connector, the default one only MySQL's.
        p.setProperty("connector.class", connector.equals("mysql") ? "io.debezium.connector.mysql.MySqlConnector" : "io.debezium.connector.mariadb.MariaDbConnector");
        p.setProperty("database.server.id", need(a, "server-id"));
        p.setProperty("database.include.list", database);
        p.setProperty("schema.history.internal", "io.debezium.storage.file.history.FileSchemaHistory");
        p.setProperty("schema.history.internal.file.filename", work.resolve("schema-history.dat").toString());
      }
      default -> usage("--connector must be postgres, mysql or mariadb, not \"" + connector + "\"");
    }

    final CountDownLatch done = new CountDownLatch(1);
    final AtomicReference<Throwable> failure = new AtomicReference<>();
    final long[] t = new long[4]; // taskStarted, firstEvent, lastEvent written (fsynced), closed
    final long[] events = {0};
    final long[] bytes = {0};
    final String[] lastKey = {null};
    final FileOutputStream file = new FileOutputStream(work.resolve("events.jsonl").toFile(), true);
    final BufferedWriter out = new BufferedWriter(new OutputStreamWriter(file, StandardCharsets.UTF_8), 1 << 20);

    DebeziumEngine<ChangeEvent<String, String>> engine = DebeziumEngine.create(Json.class)
        .using(p)
        .using(new DebeziumEngine.ConnectorCallback() {
          @Override
          public void taskStarted() {
            t[0] = System.currentTimeMillis();
          }
        })
        .using((success, message, error) -> {
          if (!success) failure.compareAndSet(null, error != null ? error : new RuntimeException(message));
          done.countDown();
        })
        .notifying((List<ChangeEvent<String, String>> batch, DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer) -> {
          try {
            for (ChangeEvent<String, String> e : batch) {
              String v = e.value();
              if (v != null && topic.equals(e.destination()) && events[0] < rows) {
                if (events[0] == 0) t[1] = System.currentTimeMillis();
                out.write(v);
                out.write('\n');
                bytes[0] += v.length() + 1;
                lastKey[0] = e.key();
                events[0]++;
              }
              committer.markProcessed(e);
            }
            // Handed to the OS per batch, like a record handed to a broker.
            out.flush();
            if (events[0] >= rows && t[2] == 0) {
              file.getFD().sync();
              t[2] = System.currentTimeMillis();
              done.countDown();
            }
            committer.markBatchFinished();
          } catch (IOException ex) {
            throw new RuntimeException(ex);
          }
        })
        .build();

    ExecutorService executor = Executors.newSingleThreadExecutor(r -> {
      Thread th = new Thread(r, "debezium-bench-engine");
      th.setDaemon(true); // a failed engine never keeps the JVM alive
      return th;
    });
    executor.execute(engine);
    boolean finished = done.await(timeoutS, TimeUnit.SECONDS);
    // Stops the connector and commits the offsets of everything handled (the resume point of the next run).
    try {
      engine.close();
    } catch (IllegalStateException alreadyStopped) {
      // the engine stopped by itself (it failed): the completion callback has the reason
    }
    executor.shutdown();
    executor.awaitTermination(60, TimeUnit.SECONDS);
    t[3] = System.currentTimeMillis();
    out.close();

    Throwable err = failure.get();
    long seconds0 = t[2] > 0 ? t[2] - jvmStartAt : -1;
    StringBuilder json = new StringBuilder("{");
    json.append("\"connector\":\"").append(connector).append('"');
    json.append(",\"rows\":").append(events[0]);
    json.append(",\"bytes\":").append(bytes[0]);
    json.append(",\"jsonSchemas\":").append(Boolean.parseBoolean(schemas));
    json.append(",\"jvmStartEpochMs\":").append(jvmStartAt);
    json.append(",\"mainEpochMs\":").append(mainAt);
    json.append(",\"taskStartedEpochMs\":").append(t[0]);
    json.append(",\"firstEventEpochMs\":").append(t[1]);
    json.append(",\"lastEventEpochMs\":").append(t[2]);
    json.append(",\"closedEpochMs\":").append(t[3]);
    json.append(",\"seconds\":").append(seconds0 / 1000.0);
    json.append(",\"streamingSeconds\":").append(t[2] > 0 && t[0] > 0 ? (t[2] - t[0]) / 1000.0 : -1);
    json.append(",\"rowsPerSecond\":").append(seconds0 > 0 ? Math.round(events[0] * 1000.0 / seconds0) : -1);
    json.append(",\"peakRssKiB\":").append(peakRssKiB());
    json.append(",\"lastKey\":").append(lastKey[0] == null ? "null" : lastKey[0]);
    if (err != null) json.append(",\"error\":\"").append(String.valueOf(err).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ")).append('"');
    json.append('}');
    System.out.println(json);
    System.out.flush();
    if (err != null && !finished) System.exit(1);
    System.exit(finished && events[0] >= rows ? 0 : (err != null ? 1 : 3));
  }
}
