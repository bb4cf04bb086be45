import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createdTable, ddlEffects, namesOnlyOtherSchemas, tablesNamed } from '../../../../connectors/mysql/ddl-effect.js';

/**
 * Real MariaDB/MySQL ALTER statements (from the MariaDB manual, mysqldump output and the
 * migrations of clinical applications), each with what it does to the rows a table has: a
 * resync when values may change without row events, none when proven harmless. Unknown clauses
 * fail closed.
 */
const RESYNC: [string, RegExp][] = [
  ['ALTER TABLE t MODIFY note VARCHAR(40)', /MODIFY note/],
  ['ALTER TABLE t MODIFY COLUMN amount DECIMAL(10,0) NOT NULL', /MODIFY amount: a column redefinition/],
  ['ALTER TABLE `t` CHANGE `note` `memo` TEXT CHARACTER SET latin1', /CHANGE note/],
  ['ALTER TABLE t CHANGE COLUMN IF EXISTS a a BIGINT', /CHANGE a/],
  ['ALTER TABLE t ADD COLUMN c INT AS (id*2) STORED', /column c is generated/],
  ['ALTER TABLE t ADD c INT GENERATED ALWAYS AS (id * 2) VIRTUAL', /column c is generated/],
  ['ALTER TABLE t ADD COLUMN full_name VARCHAR(200) AS (CONCAT(first, last)) PERSISTENT', /generated/],
  ['ALTER TABLE t ADD COLUMN seq INT NOT NULL AUTO_INCREMENT UNIQUE', /AUTO_INCREMENT/],
  ['ALTER TABLE t ADD COLUMN s SERIAL', /SERIAL/],
  ['ALTER TABLE t ADD COLUMN ts DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)', /default is not a constant/],
  ['ALTER TABLE t ADD COLUMN u CHAR(36) DEFAULT (UUID())', /default is not a constant/],
  ['ALTER TABLE t ADD COLUMN x INT DEFAULT (1 + 1)', /default is not a constant/],
  ['ALTER TABLE t CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci', /CONVERT TO CHARACTER SET/],
  ['ALTER TABLE t ENGINE=InnoDB', /ENGINE = InnoDB/],
  ['ALTER TABLE t ENGINE = BLACKHOLE', /not one chartlog can prove/],
  ['ALTER IGNORE TABLE t ADD UNIQUE KEY u_mrn (mrn)', /ALTER IGNORE/],
  ['ALTER TABLE t DROP PARTITION p2019', /DROP PARTITION/],
  ['ALTER TABLE t TRUNCATE PARTITION p0', /partition maintenance/],
  ['ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE t_old', /partition maintenance/],
  ['ALTER TABLE t DISCARD TABLESPACE', /TABLESPACE/],
  ['ALTER TABLE t ADD SYSTEM VERSIONING', /SYSTEM VERSIONING/],
  ['ALTER TABLE t FROBNICATE', /clause "FROBNICATE"/],
  // One harmless clause does not hide a rewriting one.
  ['ALTER TABLE t ADD INDEX i_note (note), MODIFY note VARCHAR(10)', /MODIFY note/],
  ['ALTER TABLE t ADD COLUMN flag INT DEFAULT 7, ADD COLUMN c INT AS (id) VIRTUAL', /column c is generated/],
  // An executable comment is code the server ran.
  ['ALTER TABLE t /*!50100 MODIFY note VARCHAR(5) */', /MODIFY note/],
  ['CREATE OR REPLACE TABLE t (id INT PRIMARY KEY)', /CREATE OR REPLACE/],
];

const HARMLESS: string[] = [
  "ALTER TABLE t ADD COLUMN flag INT NOT NULL DEFAULT 7, ADD COLUMN label VARCHAR(20) DEFAULT 'it''s', ADD COLUMN big BIGINT DEFAULT 9007199254740993, ADD COLUMN opt INT",
  'ALTER TABLE t ADD COLUMN neg INT DEFAULT -1',
  'ALTER TABLE t ADD COLUMN p DECIMAL(10,2) DEFAULT (0.50) COMMENT \'price, generated as needed\'',
  'ALTER TABLE t ADD (a INT, b VARCHAR(10) DEFAULT NULL)',
  'ALTER TABLE t ADD COLUMN IF NOT EXISTS note2 TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL AFTER note',
  'ALTER TABLE t ADD INDEX i_note (note)',
  'ALTER TABLE t ADD UNIQUE KEY u_mrn (mrn)',
  'ALTER TABLE t ADD CONSTRAINT fk_p FOREIGN KEY (patient_id) REFERENCES patients (id) ON DELETE CASCADE',
  'ALTER TABLE t ADD PRIMARY KEY (id)',
  'ALTER TABLE t DROP INDEX i_note',
  'ALTER TABLE t DROP KEY u_mrn, DROP FOREIGN KEY fk_p',
  'ALTER TABLE t DROP PRIMARY KEY',
  'ALTER TABLE t DROP COLUMN note',
  'ALTER TABLE t DROP COLUMN IF EXISTS note, DROP legacy',
  'ALTER TABLE t RENAME COLUMN note TO memo',
  'ALTER TABLE t RENAME INDEX i_a TO i_b',
  "ALTER TABLE t ALTER COLUMN note SET DEFAULT 'x'",
  'ALTER TABLE t ALTER note DROP DEFAULT',
  "ALTER TABLE t COMMENT = 'patients seen'",
  'ALTER TABLE t DEFAULT CHARACTER SET = utf8mb4 COLLATE = utf8mb4_unicode_ci',
  'ALTER TABLE t AUTO_INCREMENT = 1000',
  'ALTER TABLE t ROW_FORMAT=DYNAMIC',
  'ALTER TABLE t ADD INDEX i (note), ALGORITHM=INPLACE, LOCK=NONE',
  'ALTER TABLE t FORCE',
  'ALTER ONLINE TABLE t ADD INDEX i (note)',
  'ALTER TABLE IF EXISTS t ADD INDEX i (note)',
  'ALTER TABLE t WAIT 10 ADD INDEX i (note)',
  '/* migration 42 */ ALTER TABLE `db`.`t` ADD KEY `i` (`note`) -- trailing',
  'ALTER TABLE t RENAME TO t2',
];

for (const [sql, reason] of RESYNC) {
  test(`resync: ${sql}`, () => {
    const effects = ddlEffects(sql, 'db');
    assert.equal(effects.length, 1, 'one effect');
    assert.deepEqual(effects[0]!.table, { schema: 'db', table: 't' });
    assert.match(effects[0]!.resync ?? '(none)', reason);
  });
}

for (const sql of HARMLESS) {
  test(`harmless: ${sql}`, () => {
    const effects = ddlEffects(sql, 'db');
    assert.equal(effects.length, 1, 'one effect');
    assert.deepEqual(effects[0]!.table, { schema: 'db', table: 't' });
    assert.equal(effects[0]!.resync, null);
  });
}

test('statements that change no existing rows of a table give no effect', () => {
  for (const sql of ['CREATE TABLE t (id INT PRIMARY KEY)', 'CREATE INDEX i ON t (note)', 'DROP INDEX i ON t', 'ALTER DATABASE db CHARACTER SET utf8mb4', 'ALTER USER cdc IDENTIFIED BY \'x\'', 'DROP TABLE t', 'TRUNCATE t']) {
    assert.deepEqual(ddlEffects(sql, 'db'), [], sql);
  }
});

test('renames: table and column names are read, qualified or not, quoted or not', () => {
  assert.deepEqual(ddlEffects('ALTER TABLE t RENAME TO other.t2', 'db'), [{ table: { schema: 'db', table: 't' }, resync: null, renamedTo: { schema: 'other', table: 't2' } }]);
  assert.deepEqual(ddlEffects('RENAME TABLE `db`.`a` TO `db`.`b`, c TO d', 'db'), [
    { table: { schema: 'db', table: 'a' }, resync: null, renamedTo: { schema: 'db', table: 'b' } },
    { table: { schema: 'db', table: 'c' }, resync: null, renamedTo: { schema: 'db', table: 'd' } },
  ]);
  const col = ddlEffects('ALTER TABLE t RENAME COLUMN `note` TO `memo`, ADD INDEX i (memo)', 'db')[0]!;
  assert.equal(col.resync, null);
  assert.deepEqual([...col.renamedColumns!], [['memo', 'note']]);
  const change = ddlEffects('ALTER TABLE t CHANGE note memo VARCHAR(20)', 'db')[0]!;
  assert.match(change.resync!, /CHANGE note/, 'CHANGE also redefines: resync');
  assert.deepEqual([...change.renamedColumns!], [['memo', 'note']]);
});

test('a reason names keywords and names, never a literal of the statement', () => {
  const e = ddlEffects("ALTER TABLE t FROBNICATE 'CANARY-SSN-1'", 'db')[0]!;
  assert.doesNotMatch(e.resync!, /CANARY/);
  // Negative control: the literal is in the statement, so the check above can fail.
  assert.match("ALTER TABLE t FROBNICATE 'CANARY-SSN-1'", /CANARY/);
});

test('tablesNamed: the tables whose columns a statement can change; none for CREATE/DROP TABLE or another database\'s table; null when unreadable', () => {
  assert.deepEqual([...tablesNamed(ddlEffects('ALTER TABLE r ADD COLUMN flag INT NOT NULL DEFAULT 7', 'db'))!], ['db.r']);
  assert.deepEqual([...tablesNamed(ddlEffects('ALTER TABLE `other`.`r` DROP COLUMN IF EXISTS `extra`', 'db'))!], ['other.r']);
  assert.deepEqual([...tablesNamed(ddlEffects('RENAME TABLE k TO k2', 'db'))!].sort(), ['db.k', 'db.k2']);
  assert.deepEqual([...tablesNamed(ddlEffects('CREATE TABLE fresh (id INT PRIMARY KEY)', 'db'))!], []);
  assert.deepEqual([...tablesNamed(ddlEffects('DROP TABLE IF EXISTS r', 'db'))!], []);
  // Negative control: a statement whose table cannot be read names "any table" (null), not none.
  assert.equal(tablesNamed([{ table: null, resync: 'unreadable' }]), null);
});

test('CREATE TABLE names the table it creates (a table start); other statements name none', () => {
  assert.deepEqual(createdTable('CREATE TABLE newt (id INT PRIMARY KEY)', 'app'), { schema: 'app', table: 'newt' });
  assert.deepEqual(createdTable('create table if not exists `other`.`t 2` like x', 'app'), { schema: 'other', table: 't 2' });
  assert.deepEqual(createdTable('/*!40000 CREATE OR REPLACE TABLE */ t (a int)', 'app'), { schema: 'app', table: 't' });
  // Negative controls: not a CREATE TABLE.
  assert.equal(createdTable('CREATE TEMPORARY TABLE t (a int)', 'app'), null);
  assert.equal(createdTable('CREATE INDEX i ON t (a)', 'app'), null);
  assert.equal(createdTable('ALTER TABLE t ADD COLUMN c int', 'app'), null);
  assert.equal(createdTable('DROP TABLE t', 'app'), null);
});

test('namesOnlyOtherSchemas: a CREATE/ALTER/RENAME of tables only in uncaptured schemas needs no catalogue read; anything touching a captured schema, or not understood, does', () => {
  const captured = new Set(['clinic']);
  // A replica target's own DDL in its database on the same server: no read.
  assert.equal(namesOnlyOtherSchemas('CREATE TABLE r (id INT PRIMARY KEY)', 'replica', captured), true);
  assert.equal(namesOnlyOtherSchemas('ALTER TABLE r RENAME COLUMN note TO memo', 'replica', captured), true);
  assert.equal(namesOnlyOtherSchemas('ALTER TABLE r ADD COLUMN flag INT NOT NULL DEFAULT 7', 'replica', captured), true);
  // The captured schema, by default schema, by qualified name, in another case, or as a rename's target: read.
  assert.equal(namesOnlyOtherSchemas('ALTER TABLE r RENAME COLUMN note TO memo', 'clinic', captured), false);
  assert.equal(namesOnlyOtherSchemas('ALTER TABLE clinic.r ADD COLUMN f INT', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('ALTER TABLE CLINIC.r ADD COLUMN f INT', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('RENAME TABLE replica.a TO clinic.b', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('CREATE TABLE clinic.fresh (id INT PRIMARY KEY)', 'replica', captured), false);
  // DROP TABLE, TRUNCATE and database statements of other schemas (a replica's, other
  // applications' on the same server, as MariaDB binlogs them): no read.
  assert.equal(namesOnlyOtherSchemas('DROP TABLE r', 'replica', captured), true);
  assert.equal(namesOnlyOtherSchemas('DROP TABLE IF EXISTS `r` /* generated by server */', 'replica', captured), true);
  assert.equal(namesOnlyOtherSchemas('DROP TEMPORARY TABLE IF EXISTS a, other.b CASCADE', 'replica', captured), true);
  assert.equal(namesOnlyOtherSchemas('TRUNCATE TABLE r', 'replica', captured), true);
  assert.equal(namesOnlyOtherSchemas('TRUNCATE r', 'replica', captured), true);
  assert.equal(namesOnlyOtherSchemas('CREATE DATABASE `rs_1234`', 'clinic', captured), true);
  assert.equal(namesOnlyOtherSchemas('CREATE SCHEMA IF NOT EXISTS rs_1234 CHARACTER SET utf8mb4', 'clinic', captured), true);
  assert.equal(namesOnlyOtherSchemas('DROP DATABASE IF EXISTS `rs_1234`', 'clinic', captured), true);
  assert.equal(namesOnlyOtherSchemas('ALTER DATABASE rs_1234 CHARACTER SET utf8mb4', 'clinic', captured), true);
  // …but any of them naming the captured schema, even once in a list: read.
  assert.equal(namesOnlyOtherSchemas('DROP TABLE r', 'clinic', captured), false);
  assert.equal(namesOnlyOtherSchemas('DROP TABLE IF EXISTS replica.a, clinic.b', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('TRUNCATE TABLE clinic.r', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('DROP DATABASE clinic', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('DROP SCHEMA IF EXISTS Clinic', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('ALTER DATABASE CHARACTER SET utf8mb4', 'clinic', captured), false);
  // Statements whose tables are not read from the text: read, as before.
  assert.equal(namesOnlyOtherSchemas('CREATE INDEX i ON r (n)', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('DROP INDEX i ON r', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('DROP TABLE r FROBNICATE', 'replica', captured), false);
  assert.equal(namesOnlyOtherSchemas('DROP VIEW v', 'replica', captured), false);
  // Every schema may be captured (no `tables` setting): always read.
  assert.equal(namesOnlyOtherSchemas('CREATE TABLE r (id INT PRIMARY KEY)', 'replica', null), false);
});
