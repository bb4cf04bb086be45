import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import type { ChartlogError } from '../../../src/core/errors.js';
import { AwsKmsKeyring, parseKmsUrl, type KmsClientLike } from '../../../src/phi/keyring/aws-kms-keyring.js';
import { openKeyring } from '../../../src/phi/keyring/open-keyring.js';

const ARN = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const ctx = { source: 'clinic', keyId: 'cd'.repeat(16) };

/** A fake at the SDK boundary: "encrypts" by XOR with a pad derived from key and context (a wrong context gives garbage). */
class FakeKms implements KmsClientLike {
  readonly calls: (EncryptCommand | DecryptCommand)[] = [];
  failWith: string | undefined;

  private pad(keyId: string, context: Record<string, string> | undefined): Buffer {
    return createHash('sha256').update(keyId).update(JSON.stringify(context ?? {})).digest();
  }

  async send(command: EncryptCommand | DecryptCommand) {
    this.calls.push(command);
    if (this.failWith) throw Object.assign(new Error(`${this.failWith} from fake`), { name: this.failWith });
    if (command instanceof EncryptCommand) {
      const pad = this.pad(command.input.KeyId!, command.input.EncryptionContext);
      const pt = Buffer.from(command.input.Plaintext!);
      return { CiphertextBlob: Buffer.concat([Buffer.from('kms1'), Buffer.from(pt.map((b, i) => b ^ pad[i]!))]), KeyId: command.input.KeyId };
    }
    const blob = Buffer.from(command.input.CiphertextBlob!);
    const pad = this.pad(command.input.KeyId!, command.input.EncryptionContext);
    const pt = Buffer.from(blob.subarray(4).map((b, i) => b ^ pad[i]!));
    return { Plaintext: pt, KeyId: command.input.KeyId };
  }
}

test('parses awskms URLs and picks the region from the ARN', () => {
  assert.deepEqual(parseKmsUrl(`awskms://${ARN}`), { arn: ARN, region: 'eu-west-1' });
  assert.throws(() => parseKmsUrl('awskms://arn:aws:s3:::bucket'), (e: ChartlogError) => e.code === 'config');
});

test('wraps with Encrypt and unwraps with Decrypt, binding source and key id as the encryption context', async () => {
  const kms = new FakeKms();
  const kr = openKeyring(`awskms://${ARN}`, { kmsClient: kms });
  assert.ok(kr instanceof AwsKmsKeyring);
  const dek = new Uint8Array(32).map((_, i) => i);
  const wrapped = await kr.wrapKey(dek, ctx);
  assert.equal(wrapped.provider, 'awskms');
  assert.equal(wrapped.kekId, ARN);
  const enc = kms.calls[0] as EncryptCommand;
  assert.ok(enc instanceof EncryptCommand);
  assert.equal(enc.input.KeyId, ARN);
  assert.deepEqual(enc.input.EncryptionContext, { 'chartlog:source': 'clinic', 'chartlog:keyId': ctx.keyId });
  assert.deepEqual(await kr.unwrapKey(wrapped, ctx), dek);
  const dec = kms.calls[1] as DecryptCommand;
  assert.ok(dec instanceof DecryptCommand);
  assert.deepEqual(dec.input.EncryptionContext, enc.input.EncryptionContext);
  assert.equal(dec.input.KeyId, ARN);
});

test('KMS failures become clear ChartlogErrors: denied → auth, bad ciphertext → integrity, throttling → retriable', async () => {
  const kms = new FakeKms();
  const kr = new AwsKmsKeyring(ARN, kms);
  const wrapped = await kr.wrapKey(new Uint8Array(32), ctx);
  const cases: [string, string, boolean][] = [
    ['AccessDeniedException', 'auth', false],
    ['InvalidCiphertextException', 'integrity', false],
    ['ThrottlingException', 'connection', true],
    ['DisabledException', 'config', false],
  ];
  for (const [name, code, retriable] of cases) {
    kms.failWith = name;
    await assert.rejects(kr.unwrapKey(wrapped, ctx), (e: ChartlogError) => {
      assert.equal(e.code, code, name);
      assert.equal(e.retriable, retriable);
      assert.match(e.message, new RegExp(ctx.keyId));
      return true;
    });
  }
  kms.failWith = undefined;
  await assert.rejects(kr.unwrapKey({ ...wrapped, provider: 'file' }, ctx), (e: ChartlogError) => e.code === 'auth');
});

test('a DEK that does not come back as 256 bits is refused', async () => {
  const kr = new AwsKmsKeyring(ARN, { send: async () => ({ Plaintext: new Uint8Array(16) }) });
  await assert.rejects(kr.unwrapKey({ provider: 'awskms', kekId: ARN, ciphertext: 'AA==' }, ctx), (e: ChartlogError) => e.code === 'integrity');
});
