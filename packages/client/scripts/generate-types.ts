/**
 * Generates packages/client/src/api-types.ts from docs/openapi.yaml (`npm run client:generate`). The
 * client's test calls `generateTypes()` too and compares, so the committed types cannot drift.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const OPENAPI_PATH = path.join(root, 'docs', 'openapi.yaml');
export const TYPES_PATH = path.join(root, 'packages', 'client', 'src', 'api-types.ts');

export async function generateTypes(): Promise<string> {
  const ast = await openapiTS(readFileSync(OPENAPI_PATH, 'utf8'), { silent: true });
  return `${COMMENT_HEADER}${astToString(ast)}`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(TYPES_PATH, await generateTypes());
  console.log(`wrote ${path.relative(root, TYPES_PATH)}`);
}
