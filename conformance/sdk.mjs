// Runs operations of the official Walrus TypeScript SDK against the devnet and prints one JSON
// line with their results, for tests/test_sdk_conformance.py.
//
//   WALRUSFS_DEVNET=<data_dir>/devnet node sdk.mjs '<JSON list of operations>'
//
// Every operation is an object with an `op` field (see OPS below). Operations run in order in
// one process (the SDK's wasm encoder and caches are loaded once). An operation that throws
// ends the run: the line then holds the results so far and `error` (the SDK's message), and
// the exit code is 1.
//
// Only public SDK calls are made, with their defaults, except in `nodes`: the SDK's storage
// node client (`StorageNodeClient`) is not exported from the package root, so it is imported
// from its module file to call each endpoint of each node directly.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { WalrusFile } from '@mysten/walrus';
import { StorageNodeClient } from './node_modules/@mysten/walrus/dist/storage-node/client.mjs';
import { toPairIndex } from './node_modules/@mysten/walrus/dist/utils/index.mjs';

import { client, devnetSpec, report, wallet } from './devnet.mjs';

const sdk = client();
const signer = wallet();

async function readBlobTo(blobId, out) {
	const bytes = await sdk.walrus.readBlob({ blobId });
	writeFileSync(out, bytes);
	return { blobId, size: bytes.length };
}

async function fileResult(file, out) {
	const bytes = await file.bytes();
	writeFileSync(out, bytes);
	return { size: bytes.length, identifier: await file.getIdentifier(), tags: await file.getTags() };
}

/** Every endpoint of every storage node through the SDK's node client, for one stored blob. */
async function nodes({ blobId, deletable, objectId }) {
	const spec = devnetSpec();
	const nodeClient = new StorageNodeClient();
	const nShards = spec.n_shards;
	const results = [];
	for (const port of spec.node_ports) {
		const nodeUrl = `http://127.0.0.1:${port}`;
		// The devnet node's health report names its shards (ServiceHealthInfo.shardDetail).
		const health = await (await fetch(`${nodeUrl}/v1/health?detailed=true`)).json();
		const shards = health.success.data.shardDetail.owned.map((s) => s.shard);
		const metadata = await nodeClient.getBlobMetadata({ blobId }, { nodeUrl });
		const node = {
			port,
			shards,
			metadataBlobId: metadata.blobId,
			metadataStatus: await nodeClient.getMetadataStatus({ blobId }, { nodeUrl }),
			blobStatus: await nodeClient.getBlobStatus({ blobId }, { nodeUrl }),
			storeMetadata: await nodeClient.storeBlobMetadata(
				{ blobId, metadata: metadata.metadata },
				{ nodeUrl },
			),
			slivers: [],
		};
		for (const shard of shards) {
			const pair = toPairIndex(shard, blobId, nShards);
			for (const sliverType of ['primary', 'secondary']) {
				const sliver = await nodeClient.getSliver(
					{ blobId, sliverPairIndex: pair, sliverType },
					{ nodeUrl },
				);
				node.slivers.push({
					pair,
					sliverType,
					bytes: sliver.length,
					status: await nodeClient.getSliverStatus(
						{ blobId, sliverPairIndex: pair, sliverType },
						{ nodeUrl },
					),
					store: await nodeClient.storeSliver(
						{ blobId, sliverPairIndex: pair, sliverType, sliver },
						{ nodeUrl },
					),
				});
			}
		}
		const confirmation = deletable
			? await nodeClient.getDeletableBlobConfirmation({ blobId, objectId }, { nodeUrl })
			: await nodeClient.getPermanentBlobConfirmation({ blobId }, { nodeUrl });
		node.confirmationSigned = Boolean(confirmation?.success?.data?.signed?.signature);
		try {
			await nodeClient.getBlobMetadata({ blobId: 'A'.repeat(43) }, { nodeUrl });
			node.unknownBlob = 'found';
		} catch (error) {
			node.unknownBlob = error.constructor.name;
		}
		results.push(node);
	}
	return results;
}

const OPS = {
	/** writeBlob: { file, deletable, epochs, attributes? } -> blobId, objectId */
	async write({ file, deletable, epochs, attributes }) {
		const { blobId, blobObject } = await sdk.walrus.writeBlob({
			blob: readFileSync(file),
			deletable,
			epochs,
			signer,
			attributes,
		});
		return { blobId, objectId: blobObject.id, endEpoch: blobObject.storage.end_epoch };
	},
	/** readBlob: { blobId, out } */
	async read({ blobId, out }) {
		return readBlobTo(blobId, out);
	},
	/** writeFiles (a quilt): { files: [{ path, identifier, tags }], deletable, epochs } */
	async writeFiles({ files, deletable, epochs }) {
		const walrusFiles = files.map(({ path, identifier, tags }) =>
			WalrusFile.from({ contents: readFileSync(path), identifier, tags }),
		);
		const written = await sdk.walrus.writeFiles({ files: walrusFiles, deletable, epochs, signer });
		return written.map(({ id, blobId, blobObject }) => ({ id, blobId, objectId: blobObject.id }));
	},
	/** getFiles by patch IDs (or blob IDs): { ids, outDir } */
	async getFiles({ ids, outDir }) {
		mkdirSync(outDir, { recursive: true });
		const files = await sdk.walrus.getFiles({ ids });
		const out = [];
		for (const [i, file] of files.entries()) out.push(await fileResult(file, join(outDir, `${i}`)));
		return out;
	},
	/** getBlob(quiltId).files(): every file of a quilt: { blobId, outDir } */
	async quiltFiles({ blobId, outDir }) {
		mkdirSync(outDir, { recursive: true });
		const files = await (await sdk.walrus.getBlob({ blobId })).files();
		const out = [];
		for (const [i, file] of files.entries()) out.push(await fileResult(file, join(outDir, `${i}`)));
		return out;
	},
	nodes,
	/** getVerifiedBlobStatus: { blobId } */
	async status({ blobId }) {
		return sdk.walrus.getVerifiedBlobStatus({ blobId });
	},
	/** getBlobObject: { objectId } -> the Blob's end epoch, deletable, certified epoch */
	async blobObject({ objectId }) {
		const blob = await sdk.walrus.getBlobObject(objectId);
		return {
			blobId: blob.blob_id,
			endEpoch: blob.storage.end_epoch,
			deletable: blob.deletable,
			certifiedEpoch: blob.certified_epoch,
		};
	},
	/** executeExtendBlobTransaction: { objectId, epochs } */
	async extend({ objectId, epochs }) {
		return sdk.walrus.executeExtendBlobTransaction({ blobObjectId: objectId, epochs, signer });
	},
	/** executeWriteBlobAttributesTransaction: { objectId, attributes } (null removes a key) */
	async writeAttributes({ objectId, attributes }) {
		return sdk.walrus.executeWriteBlobAttributesTransaction({
			blobObjectId: objectId,
			attributes,
			signer,
		});
	},
	/** readBlobAttributes: { objectId } */
	async readAttributes({ objectId }) {
		return sdk.walrus.readBlobAttributes({ blobObjectId: objectId });
	},
	/** executeDeleteBlobTransaction: { objectId } */
	async delete({ objectId }) {
		return sdk.walrus.executeDeleteBlobTransaction({ blobObjectId: objectId, signer });
	},
	/** The SDK's Sui client on the stand-in: chain identifier, system state, WAL balance. */
	async chain() {
		const address = signer.toSuiAddress();
		const { systemState } = await sdk.core.getCurrentSystemState();
		const wal = await sdk.core.getBalance({ owner: address, coinType: devnetSpec().chain.wal_type });
		const { response } = await sdk.ledgerService.getCheckpoint({
			checkpointId: { oneofKind: 'sequenceNumber', sequenceNumber: 0n },
			readMask: { paths: ['sequence_number', 'digest'] },
		});
		return {
			genesisCheckpointDigest: response.checkpoint?.digest,
			chainIdentifier: (await sdk.core.getChainIdentifier()).chainIdentifier,
			epoch: systemState.epoch,
			referenceGasPrice: systemState.referenceGasPrice,
			wal: wal.balance.balance,
		};
	},
};

const results = [];
let exitCode = 0;
try {
	for (const operation of JSON.parse(process.argv[2] ?? '[]')) {
		const run = OPS[operation.op];
		if (!run) throw new Error(`unknown operation ${operation.op}`);
		results.push(await run(operation));
	}
	report({ results });
} catch (error) {
	report({ results, error: `${error?.constructor?.name}: ${error?.message}` });
	exitCode = 1;
}
// The SDK keeps no handles that need closing; exit without waiting for idle sockets.
process.exit(exitCode);
