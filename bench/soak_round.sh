# Sourced by bench/soak.sh and bench/worker_soak.sh: the SQL of one soak round, 50,000 row changes
# to s(id, v, n): 100 transactions inserting 100 rows each (ids BASE+1 to BASE+10,000), three
# UPDATEs of those rows (one transaction each), then one DELETE of the rows WHERE says.
# Usage: soak_round_sql ROUND BASE WHERE | psql ...
soak_round_sql() {
  local t
  for t in $(seq 0 99); do
    echo "INSERT INTO s SELECT g, 'round $1 ' || g, g FROM generate_series($(($2 + t * 100 + 1)), $(($2 + t * 100 + 100))) g;"
  done
  echo "UPDATE s SET n = n + 1, v = v || 'u' WHERE id > $2;"
  echo "UPDATE s SET n = n + 1 WHERE id > $2;"
  echo "UPDATE s SET v = 'x' WHERE id > $2;"
  echo "DELETE FROM s WHERE $3;"
}
