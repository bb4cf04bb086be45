import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ArchiveMac, canonicalJson, macInput, sha256OfBytes } from '../../../src/phi/archive-mac.js';
import { FileKeyring } from '../../../src/phi/keyring/file-keyring.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

const keyring = () => FileKeyring.create(join(mkdtempSync(join(tmpdir(), 'chartlog-mac-')), 'keyring.json'));
const noAdoption = async () => ({ head: null, objects: {} });

test('canonical JSON: keys sorted at every depth, no whitespace, JSON.stringify values', () => {
  assert.equal(canonicalJson({ b: 1, a: [1, 'x', null, true, { d: 2, c: 'é' }] }), '{"a":[1,"x",null,true,{"c":"é","d":2}],"b":1}');
  // Two spellings of one object are one canonical text.
  assert.equal(canonicalJson(JSON.parse('{ "z": "1", "y": { "q": [ ], "p": {} } }')), canonicalJson({ y: { p: {}, q: [] }, z: '1' }));
  // UTF-16 code-unit order (RFC 8785), as JS sorts.
  assert.equal(canonicalJson({ '\u{1F600}': 1, '\uFB33': 2, a: 3 }), '{"a":3,"\u{1F600}":1,"\uFB33":2}');
  assert.equal(canonicalJson({ a: undefined, b: [undefined] }), '{"b":[null]}', 'undefined as JSON.stringify treats it');
  assert.equal(canonicalJson('quo"te\n'), '"quo\\"te\\n"');
  assert.throws(() => canonicalJson({ a: NaN }), /non-finite/);
  assert.throws(() => canonicalJson({ a: 1n }), /bigint/);
});

test('the MAC input binds the object key and leaves only the top-level mac out', () => {
  const a = macInput('clinic/manifests/2026-11-24T05.json', { x: 1, mac: { value: 'ff' } });
  assert.deepEqual(a, macInput('clinic/manifests/2026-11-24T05.json', { x: 1 }));
  assert.notDeepEqual(a, macInput('clinic/manifests/2026-11-24T06.json', { x: 1 }));
  assert.notDeepEqual(macInput('k', { x: { mac: 1 } }), macInput('k', { x: {} }), 'a nested mac field is content');
  assert.ok(a.toString('utf8').startsWith('chartlog-archive-mac-v1\0clinic/manifests/2026-11-24T05.json\0{"x":1}'));
});

test('sign and check: whole JSON covered, fields added later included; formatting is not content', async () => {
  const store = new MemoryObjectStore();
  const mac = await ArchiveMac.loadOrCreate(store, keyring(), 'clinic', noAdoption);
  const key = 'clinic/state/checkpoint.json';
  const signed = mac.sign(key, { version: 1, position: 'p', head: { hour: '2026-11-24T05', sha256: 'aa' } });
  assert.equal(signed.mac.version, 1);
  assert.match(signed.mac.value, /^[0-9a-f]{64}$/);
  const reread = (o: object) => JSON.parse(JSON.stringify(o)) as Record<string, unknown>;
  assert.equal(mac.check(key, reread(signed)), 'valid');
  // Re-indented with the keys in another order: still the same content.
  const shuffled = JSON.parse(JSON.stringify({ mac: signed.mac, head: { sha256: 'aa', hour: '2026-11-24T05' }, position: 'p', version: 1 }, null, 7)) as Record<string, unknown>;
  assert.equal(mac.check(key, shuffled), 'valid');
  assert.equal(mac.check(key, { ...reread(signed), archiveId: 'x' }), 'invalid', 'a field someone adds is covered');
  assert.equal(mac.check(key, { ...reread(signed), head: null }), 'invalid');
  const { head: _h, ...dropped } = reread(signed);
  assert.equal(mac.check(key, dropped), 'invalid', 'a field someone removes is covered');
  assert.equal(mac.check('clinic/state/other.json', reread(signed)), 'invalid', 'moved to another name');
  assert.equal(mac.check(key, { ...reread(signed), mac: { ...signed.mac, version: 2 } }), 'invalid', 'an unknown MAC version is refused');
  const { mac: _m, ...bare } = reread(signed);
  assert.equal(mac.check(key, bare), 'missing');
  // Re-signing replaces the old MAC rather than covering it.
  assert.equal(mac.check(key, reread(mac.sign(key, { ...reread(signed), position: 'q' }))), 'valid');
});

test('objects the key adopted are accepted by their exact bytes only', async () => {
  const store = new MemoryObjectStore();
  const legacy = Buffer.from('{"version":1,"id":"s1"}\n');
  const key = 'clinic/snapshots/s1/manifest.json';
  const mac = await ArchiveMac.loadOrCreate(store, keyring(), 'clinic', async () => ({ head: null, objects: { [key]: sha256OfBytes(legacy) } }));
  assert.equal(mac.check(key, JSON.parse(legacy.toString()), sha256OfBytes(legacy)), 'adopted');
  const edited = Buffer.from('{"version":1,"id":"s2"}\n');
  assert.equal(mac.check(key, JSON.parse(edited.toString()), sha256OfBytes(edited)), 'missing');
  assert.equal(mac.check('clinic/snapshots/s9/manifest.json', JSON.parse(legacy.toString()), sha256OfBytes(legacy)), 'missing', 'adopted under its own name only');
});

test('the key is stored only wrapped, created once, and unwraps only with its keyring; its adoption list is authenticated', async () => {
  const store = new MemoryObjectStore();
  const kr = keyring();
  const a = await ArchiveMac.loadOrCreate(store, kr, 'clinic', noAdoption);
  const b = await ArchiveMac.loadOrCreate(store, kr, 'clinic', async () => assert.fail('not created twice'));
  assert.equal(b.sign('k', { x: 1 }).mac.value, a.sign('k', { x: 1 }).mac.value, 'the stored key is the one that was made');
  const objectKey = ArchiveMac.keyObjectKey('clinic');
  assert.equal(objectKey, 'clinic/keys/archive-mac.json');
  const stored = JSON.parse(store.objects.get(objectKey)!.body.toString()) as Record<string, unknown>;
  assert.deepEqual(Object.keys(stored).sort(), ['adopted', 'algorithm', 'createdAt', 'format', 'keyId', 'mac', 'source', 'wrapped']);
  assert.equal((stored.wrapped as { provider: string }).provider, 'file');
  assert.equal(await ArchiveMac.load(new MemoryObjectStore(), kr, 'clinic'), null, 'no key object: an archive from before archive MACs');
  await assert.rejects(ArchiveMac.load(store, keyring(), 'clinic'), /KEK|unwrap/, 'another keyring cannot unwrap it');
  // Adopting more objects by editing the key object breaks its MAC.
  store.objects.set(objectKey, { body: Buffer.from(JSON.stringify({ ...stored, adopted: { head: null, objects: { 'clinic/x.json': '00' } } })), lastModified: new Date() });
  await assert.rejects(ArchiveMac.load(store, kr, 'clinic'), /MAC does not match/);
});
