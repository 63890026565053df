/* The SQLite workload's driver program (bench/workloads/sqlite.sh): runs a
 * few SQL statements on an in-memory database and prints every row, so the
 * bench can check that the program aotc and replay built really works. */
#include <stdio.h>
#include "sqlite3.h"

static int print_row(void *unused, int columns, char **values, char **names) {
  (void)unused;
  (void)names;
  for (int i = 0; i < columns; i++)
    printf("%s%s", i ? "|" : "", values[i] ? values[i] : "NULL");
  printf("\n");
  return 0;
}

int main(void) {
  static const char *const statements[] = {
      "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)",
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) "
      "INSERT INTO t SELECT x, 'n' || x, (x * 37 % 1000) / 4.0 FROM c",
      "CREATE INDEX t_score ON t(score)",
      "SELECT count(*), sum(score), min(name), max(name) FROM t",
      "SELECT id, name, score FROM t WHERE score BETWEEN 100 AND 100.5 ORDER BY id LIMIT 5",
      "UPDATE t SET name = upper(name) WHERE id % 500 = 0",
      "SELECT group_concat(name, ',') FROM (SELECT name FROM t WHERE name GLOB 'N*' ORDER BY id)",
      "CREATE TABLE j AS SELECT json_object('id', id, 'half', score / 2) AS doc FROM t WHERE id <= 3",
      "SELECT doc FROM j ORDER BY rowid",
      "SELECT printf('%.3f', avg(score)), total(id) FROM t WHERE id IN (SELECT id FROM t ORDER BY score DESC LIMIT 10)",
  };
  sqlite3 *db;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
    fprintf(stderr, "demo: cannot open an in-memory database\n");
    return 1;
  }
  for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
    char *error = NULL;
    if (sqlite3_exec(db, statements[i], print_row, NULL, &error) != SQLITE_OK) {
      fprintf(stderr, "demo: statement %zu failed: %s\n", i + 1, error ? error : "?");
      sqlite3_free(error);
      sqlite3_close(db);
      return 1;
    }
  }
  sqlite3_close(db);
  return 0;
}
