// An independent COSE_Sign1 implementation for the interop test: CBOR from the npm `cbor`
// package, Ed25519 from Node's crypto. Usage:
//   node cose-interop.js verify ENVELOPE_FILE PUBKEY_HEX TENANT STREAM   → prints the payload JSON
//   node cose-interop.js sign OUT_FILE KID TENANT STREAM                 → prints the public key hex
const fs = require('fs');
const crypto = require('crypto');
const cbor = require('cbor');

function aad(tenant, stream) { return cbor.encode([tenant, stream]); }

function sigStructure(prot, tenant, stream, payload) {
  return cbor.encode(['Signature1', prot, aad(tenant, stream), payload]);
}

function publicKeyFromRaw(hex) {
  // SubjectPublicKeyInfo for Ed25519: a fixed 12-byte prefix and the 32-byte key.
  const der = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(hex, 'hex')]);
  return crypto.createPublicKey({ key: der, format: 'der', type: 'spki' });
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'verify') {
  const [file, pubHex, tenant, stream] = args;
  let top = cbor.decodeFirstSync(fs.readFileSync(file));
  if (top instanceof cbor.Tagged) {
    if (top.tag !== 18) throw new Error('tag ' + top.tag);
    top = top.value;
  }
  const [prot, unprot, payload, sig] = top;
  const hdr = cbor.decodeFirstSync(prot);
  if (hdr.get(1) !== -8) throw new Error('alg is not EdDSA');
  const ok = crypto.verify(null, sigStructure(prot, tenant, stream, payload), publicKeyFromRaw(pubHex), sig);
  if (!ok) { console.error('FAIL: signature does not verify'); process.exit(1); }
  const body = cbor.decodeFirstSync(payload);
  console.log(JSON.stringify({ kid: Buffer.from(hdr.get(4)).toString(), payload: body }));
} else if (cmd === 'sign') {
  const [file, kid, tenant, stream] = args;
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const prot = cbor.encode(new Map([[1, -8], [4, Buffer.from(kid)]]));
  // Written the way another implementation would: integers where values are whole, half floats
  // where cbor chooses them, keys in its own order.
  const payload = cbor.encode({
    seq: 7, boot: 1700000000, device: 'node-r1', sent_at: 1764633600.5,
    samples: [{ t: 1764633600, bt: 200, et: 230.25, heater: 8, fan: 3, drum: 9, state: 6 },
              { t: 1764633601, bt: 199.5, et: 230, ror: -12.5, state: 6 }],
  });
  const sig = crypto.sign(null, sigStructure(prot, tenant, stream, payload), privateKey);
  fs.writeFileSync(file, cbor.encode(new cbor.Tagged(18, [prot, new Map(), payload, sig])));
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  console.log(spki.subarray(spki.length - 32).toString('hex'));
} else {
  console.error('usage: cose-interop.js verify|sign ...');
  process.exit(2);
}
