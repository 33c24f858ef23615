// sqlite-floor: the least CPU Waypost's journal spends per message in SQLite itself.
//
// Part of scripts/bench/floor.sh (see scripts/bench/README.md, "Floor benchmark"). It
// creates a fresh journal with Waypost's schema (a file dumped from a real journal with
// `sqlite3 journal.db .schema`), then stores MESSAGES messages in transactions of BATCH,
// the way Waypost's journal writer does with group commit: the same pragmas and the same
// prepared statements (copied byte for byte from Sources/WaypostJournal/JournalWriter.swift;
// `sqlite-floor -p` prints them so that floor.sh can compare), a 1024-byte body per message.
//
// With -o each intake transaction is followed by one that records the batch's outcomes as
// the forwarder reports them after a 200 from the upstream: the attempt row (upsert) and the
// message's update to 'delivered' with the upstream's status, headers and body. As in
// Waypost, a transaction that holds messages commits with synchronous=FULL under durability
// full (one fsync of the WAL), and one that holds only outcomes with synchronous=NORMAL
// (no fsync); under durability relaxed every commit uses NORMAL.
//
// Waypost checkpoints the WAL on a thread of its own (wp-checkpoint); here SQLite's automatic
// checkpoint (every 1000 WAL pages) does it in this process, so its cost is counted too.
// Not here: Waypost's Swift side (building the messages, timestamps, JSON of the headers,
// the inbox and the completions).
//
// Usage: sqlite-floor [-b BATCH] [-n MESSAGES] [-d full|relaxed] [-o] SCHEMA_FILE JOURNAL
//        sqlite-floor -p
//   -b  messages per intake transaction (default 32)
//   -n  messages in all (default 200000; the last batch may be smaller)
//   -d  durability: full (default) or relaxed
//   -o  also commit each batch's outcomes after it
//   -p  print the three statements copied from Waypost, separated by lines "--", and exit
// JOURNAL must not exist yet. Prints one line of key=value pairs:
//   durability=full outcomes=1 batch=32 messages=200000 commits=12500 seconds=9.87
//   msgs_per_s=20263 cpu_us_per_message=30.1 user_us_per_message=20.0 sys_us_per_message=10.1
// CPU is this process's user + system time (getrusage) over the stores and commits (not
// the schema's creation), divided by the messages. Exit status 0, 1 when SQLite fails,
// 64 for bad arguments.
//
// Build: gcc -O2 -o sqlite-floor sqlite-floor.c -lsqlite3

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

#define BODY_BYTES 1024

// JournalWriter.swift's `insert`, `closeAttempt` and `finishMessageWithResponse`, exactly as
// its multi-line Swift literals evaluate (indentation removed, no final newline).
static const char *INSERT_MESSAGE =
    "INSERT INTO messages (correlation_id, route, ordering_key, idempotency_key, method, path, headers, body,\n"
    "                      received_at, updated_at, client_address)\n"
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)";
static const char *CLOSE_ATTEMPT =
    "INSERT INTO attempts (message_id, attempt, started_at, duration_ms, status, error) VALUES (?1, ?2, ?6, ?3, ?4, ?5)\n"
    "ON CONFLICT (message_id, attempt) DO UPDATE SET duration_ms = ?3, status = ?4, error = ?5";
static const char *FINISH_MESSAGE_WITH_RESPONSE =
    "UPDATE messages SET state = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5,\n"
    "    delivered_at = CASE WHEN ?2 = 'delivered' THEN ?5 ELSE delivered_at END,\n"
    "    response_status = ?6, response_headers = ?7, response_body = ?8,\n"
    "    attempts = max(attempts, ?9), cycle_attempts = coalesce(?10, cycle_attempts)\n"
    "WHERE id = ?1 AND (state <> 'skipped' OR ?2 IN ('delivered', 'skipped'))";

// What Waypost stores for a wrk request (post-1k.lua) and for nginx's "return 200" answer.
static const char *REQUEST_HEADERS =
    "[[\"Content-Type\",\"application/json\"],[\"Host\",\"127.0.0.1:18080\"],[\"Content-Length\",\"1024\"]]";
static const char *RESPONSE_HEADERS =
    "[[\"Server\",\"nginx/1.22.1\"],[\"Date\",\"Mon, 30 Nov 2026 07:10:14 GMT\"],[\"Content-Type\",\"text/plain\"],"
    "[\"Content-Length\",\"3\"],[\"Connection\",\"keep-alive\"]]";
static const char *TIMESTAMP = "2026-11-30T07:10:14.969Z";

static sqlite3 *db;

// Stops the program unless `rc` is a success code of SQLite.
static void check(int rc, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite-floor: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void execute(const char *sql) { check(sqlite3_exec(db, sql, NULL, NULL, NULL), sql); }

static sqlite3_stmt *prepare(const char *sql) {
    sqlite3_stmt *statement = NULL;
    check(sqlite3_prepare_v2(db, sql, -1, &statement, NULL), sql);
    return statement;
}

// Runs a statement whose parameters are bound, then resets it for the next use.
static void run(sqlite3_stmt *statement, const char *what) {
    check(sqlite3_step(statement), what);
    sqlite3_reset(statement);
}

static char *read_file(const char *path) {
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        perror(path);
        exit(1);
    }
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    rewind(file);
    char *text = malloc((size_t)size + 1);
    if (text == NULL || fread(text, 1, (size_t)size, file) != (size_t)size) {
        fprintf(stderr, "sqlite-floor: cannot read %s\n", path);
        exit(1);
    }
    text[size] = 0;
    fclose(file);
    return text;
}

// Waypost issues the pragma only when the setting changes; so does this.
static int synchronous_full = -1;
static void set_synchronous(int full) {
    if (full == synchronous_full) return;
    execute(full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    synchronous_full = full;
}

static void usage(void) {
    fprintf(stderr, "usage: sqlite-floor [-b BATCH] [-n MESSAGES] [-d full|relaxed] [-o] SCHEMA_FILE JOURNAL\n"
                    "       sqlite-floor -p\n");
    exit(64);
}

int main(int argc, char **argv) {
    long batch = 32, total = 200000;
    int full = 1, outcomes = 0, opt;
    while ((opt = getopt(argc, argv, "b:n:d:op")) != -1) {
        switch (opt) {
        case 'b': batch = strtol(optarg, NULL, 10); break;
        case 'n': total = strtol(optarg, NULL, 10); break;
        case 'd':
            if (strcmp(optarg, "full") == 0) full = 1;
            else if (strcmp(optarg, "relaxed") == 0) full = 0;
            else usage();
            break;
        case 'o': outcomes = 1; break;
        case 'p':
            printf("%s\n--\n%s\n--\n%s\n", INSERT_MESSAGE, CLOSE_ATTEMPT, FINISH_MESSAGE_WITH_RESPONSE);
            return 0;
        default: usage();
        }
    }
    if (optind != argc - 2 || batch < 1 || total < 1) usage();
    const char *schema_path = argv[optind], *journal = argv[optind + 1];
    if (access(journal, F_OK) == 0) {
        fprintf(stderr, "sqlite-floor: %s exists; give a fresh path\n", journal);
        return 64;
    }

    // As Waypost opens its writer connection (Schema.prepareWriter), then the schema.
    if (sqlite3_open(journal, &db) != SQLITE_OK) check(SQLITE_ERROR, "open");
    execute("PRAGMA busy_timeout = 5000");
    execute("PRAGMA journal_mode = WAL");
    set_synchronous(full);
    execute("PRAGMA foreign_keys = ON");
    char *schema = read_file(schema_path);
    execute("BEGIN IMMEDIATE");
    execute(schema);
    execute("COMMIT");
    free(schema);

    sqlite3_stmt *insert = prepare(INSERT_MESSAGE);
    sqlite3_stmt *close_attempt = prepare(CLOSE_ATTEMPT);
    sqlite3_stmt *finish = prepare(FINISH_MESSAGE_WITH_RESPONSE);

    static char body[BODY_BYTES];
    memset(body, 'x', sizeof body);
    memcpy(body, "{\"data\":\"", 9);
    memcpy(body + BODY_BYTES - 2, "\"}", 2);

    long stored = 0, commits = 0;
    double user0, sys0, user1, sys1;
    double started = wall_seconds();
    cpu_seconds(&user0, &sys0);
    while (stored < total) {
        // The intake's transaction: `size` new messages (row ids stored + 1 ... stored + size).
        long size = total - stored < batch ? total - stored : batch;
        set_synchronous(full);
        execute("BEGIN IMMEDIATE");
        for (long i = 0; i < size; i++) {
            char correlation_id[32];
            snprintf(correlation_id, sizeof correlation_id, "01M8NMMEXS%016ld", stored + i);
            sqlite3_bind_text(insert, 1, correlation_id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(insert, 2, "bench", -1, SQLITE_STATIC);      // route
            sqlite3_bind_null(insert, 3);                                   // ordering_key
            sqlite3_bind_null(insert, 4);                                   // idempotency_key
            sqlite3_bind_text(insert, 5, "POST", -1, SQLITE_STATIC);
            sqlite3_bind_text(insert, 6, "/", -1, SQLITE_STATIC);
            sqlite3_bind_text(insert, 7, REQUEST_HEADERS, -1, SQLITE_STATIC);
            sqlite3_bind_blob(insert, 8, body, sizeof body, SQLITE_STATIC);
            sqlite3_bind_text(insert, 9, TIMESTAMP, -1, SQLITE_STATIC);    // received_at, updated_at
            sqlite3_bind_text(insert, 10, "127.0.0.1", -1, SQLITE_STATIC); // client_address
            run(insert, "insert");
        }
        execute("COMMIT");
        commits++;

        if (outcomes) {
            // The forwarder's outcomes for the same messages: first attempt, 200 after 1 ms.
            set_synchronous(0);
            execute("BEGIN IMMEDIATE");
            for (long i = 0; i < size; i++) {
                sqlite3_int64 id = stored + 1 + i;
                sqlite3_bind_int64(close_attempt, 1, id);
                sqlite3_bind_int(close_attempt, 2, 1);                          // attempt
                sqlite3_bind_int(close_attempt, 3, 1);                          // duration_ms
                sqlite3_bind_int(close_attempt, 4, 200);                        // status
                sqlite3_bind_null(close_attempt, 5);                            // error
                sqlite3_bind_text(close_attempt, 6, TIMESTAMP, -1, SQLITE_STATIC); // started_at
                run(close_attempt, "attempt");
                sqlite3_bind_int64(finish, 1, id);
                sqlite3_bind_text(finish, 2, "delivered", -1, SQLITE_STATIC);   // state
                sqlite3_bind_null(finish, 3);                                   // next_attempt_at
                sqlite3_bind_null(finish, 4);                                   // last_error
                sqlite3_bind_text(finish, 5, TIMESTAMP, -1, SQLITE_STATIC);     // updated_at
                sqlite3_bind_int(finish, 6, 200);                               // response_status
                sqlite3_bind_text(finish, 7, RESPONSE_HEADERS, -1, SQLITE_STATIC);
                sqlite3_bind_blob(finish, 8, "ok\n", 3, SQLITE_STATIC);         // response_body
                sqlite3_bind_int(finish, 9, 1);                                 // attempts
                sqlite3_bind_int(finish, 10, 1);                                // cycle_attempts
                run(finish, "update");
            }
            execute("COMMIT");
            commits++;
        }
        stored += size;
    }
    double elapsed = wall_seconds() - started;
    cpu_seconds(&user1, &sys1);

    double user_us = (user1 - user0) * 1e6 / (double)stored;
    double sys_us = (sys1 - sys0) * 1e6 / (double)stored;
    printf("durability=%s outcomes=%d batch=%ld messages=%ld commits=%ld seconds=%.2f msgs_per_s=%.0f "
           "cpu_us_per_message=%.1f user_us_per_message=%.1f sys_us_per_message=%.1f\n",
           full ? "full" : "relaxed", outcomes, batch, stored, commits, elapsed, (double)stored / elapsed,
           user_us + sys_us, user_us, sys_us);

    sqlite3_finalize(insert);
    sqlite3_finalize(close_attempt);
    sqlite3_finalize(finish);
    sqlite3_close(db);
    return 0;
}
