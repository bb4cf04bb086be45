#!/bin/sh
# Runs once, on the first start of the mysql container (docker-entrypoint-initdb.d): a demo
# table and the CDC user chartlog reads the binlog as. The user keeps MySQL 8.4's default
# caching_sha2_password, which the client library speaks.
set -eu
mysql --protocol=socket --user=root --password="$MYSQL_ROOT_PASSWORD" "$MYSQL_DATABASE" <<SQL
CREATE TABLE patients (
  id          BIGINT PRIMARY KEY,
  full_name   VARCHAR(200) NOT NULL,
  ssn         VARCHAR(20),
  birth_date  DATE,
  updated_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) CHARACTER SET utf8mb4;
CREATE USER 'chartlog_cdc'@'%' IDENTIFIED BY '${CHARTLOG_CDC_PASSWORD}';
-- RELOAD: on MySQL (not MariaDB) a consistent snapshot reads its binlog position under a brief
-- FLUSH TABLES WITH READ LOCK; the connector's setup check refuses to start without it.
GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD, SELECT ON *.* TO 'chartlog_cdc'@'%';
SQL
