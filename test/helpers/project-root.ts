import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: where cdk.out, bin/ and node_modules are. */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
