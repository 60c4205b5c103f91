// Golden BCS vectors for Walrus Move structs, from the official TypeScript SDK's generated
// bindings (@mysten/walrus dist/contracts/walrus/*.mjs). Run from an installed copy of
// shared/tools/oracle:  node <this file> <oracle dir>  > tests/vectors/move_structs.json
// Our own code; it only calls the packages' bcs definitions.
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const oracle = process.argv[2];
const mod = async (p) =>
  import(pathToFileURL(join(oracle, 'node_modules/@mysten/walrus/dist/contracts/walrus', p)).href);
const { Blob } = await mod('blob.mjs');
const { Storage } = await mod('storage_resource.mjs');
const { Metadata } = await mod('metadata.mjs');
const { BlsCommittee } = await mod('bls_aggregate.mjs');
const hex = (u8) => Buffer.from(u8).toString('hex');
const addr = (b) => '0x' + b.repeat(32);

const storage = { id: addr('11'), start_epoch: 3, end_epoch: 56, storage_size: '66034000' };
const blob = {
  id: addr('22'), registered_epoch: 3,
  blob_id: '33029388974007764889800497995325165905902854956237990162315138693239164143667',
  size: '17', encoding_type: 1, certified_epoch: 4, storage, deletable: true,
};
const uncertified = { ...blob, certified_epoch: null, deletable: false };
const metadata = { metadata: { contents: [
  { key: 'walrusfs:volume', value: 'vol-1' },
  { key: 'content-type', value: 'text/plain' },
] } };
const committee = {
  members: [
    { public_key: { bytes: Array.from({ length: 96 }, (_, i) => i) }, weight: 600, node_id: addr('aa') },
    { public_key: { bytes: Array.from({ length: 96 }, (_, i) => 255 - i) }, weight: 400, node_id: addr('bb') },
  ],
  n_shards: 1000, epoch: 7, total_aggregated_key: { bytes: Array.from({ length: 48 }, (_, i) => i * 3 % 256) },
};
const out = {
  about: '@mysten/walrus 1.2.13 generated Move bindings; regenerate with tests/tools/move_vectors.mjs',
  storage: { value: storage, bcs: hex(Storage.serialize(storage).toBytes()) },
  blob: { value: blob, bcs: hex(Blob.serialize(blob).toBytes()) },
  blob_uncertified: { value: uncertified, bcs: hex(Blob.serialize(uncertified).toBytes()) },
  metadata: { value: metadata, bcs: hex(Metadata.serialize(metadata).toBytes()) },
  committee: { value: committee, bcs: hex(BlsCommittee.serialize(committee).toBytes()) },
};
console.log(JSON.stringify(out, null, 1));
