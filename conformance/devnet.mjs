// The devnet a conformance script talks to, and the official SDK clients for it, built with
// the SDK's defaults. Only what a deployment must name is configured: the full node URL, the
// Walrus System and Staking object IDs (`packageConfig`, as for any deployment the SDK does
// not ship IDs for), and the storage nodes' URL scheme (the devnet's nodes serve plain HTTP on
// 127.0.0.1; the SDK's `storageNodeUrlScheme` option exists for such networks).
//
// WALRUSFS_DEVNET names the devnet directory (`<data_dir>/devnet`): devnet.json holds the
// ports and object IDs, wallet/sui.keystore the funded wallet's key (Sui CLI keystore format:
// base64 of flag byte 0 (Ed25519) and the 32-byte secret key).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { SuiGrpcClient } from '@mysten/sui/grpc';
import { Ed25519Keypair } from '@mysten/sui/keypairs/ed25519';
import { fromBase64 } from '@mysten/sui/utils';
import { walrus } from '@mysten/walrus';

export function devnetDir() {
	const dir = process.env.WALRUSFS_DEVNET;
	if (!dir) throw new Error('WALRUSFS_DEVNET must name the devnet directory');
	return dir;
}

export function devnetSpec() {
	return JSON.parse(readFileSync(join(devnetDir(), 'devnet.json'), 'utf8'));
}

export function wallet() {
	const keys = JSON.parse(readFileSync(join(devnetDir(), 'wallet', 'sui.keystore'), 'utf8'));
	const raw = fromBase64(keys[0]);
	if (raw[0] !== 0 || raw.length !== 33) throw new Error('the devnet key is not an Ed25519 key');
	return Ed25519Keypair.fromSecretKey(raw.slice(1));
}

export function client() {
	const spec = devnetSpec();
	return new SuiGrpcClient({
		// `walrus()` accepts only a client whose network is 'mainnet' or 'testnet' (its IDs
		// come from `packageConfig` here); the devnet is run like testnet (it has the WAL
		// exchange), so it is named that.
		network: 'testnet',
		baseUrl: `http://127.0.0.1:${spec.chain.port}`,
	}).$extend(
		walrus({
			packageConfig: {
				systemObjectId: spec.chain.system_object,
				stakingPoolId: spec.chain.staking_object,
			},
			storageNodeUrlScheme: 'http',
		}),
	);
}

/** Print one JSON result line for the Python side, then end the process. */
export function report(result) {
	process.stdout.write(
		JSON.stringify(result, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n',
	);
}
