/** Matches a request path to a resource of the REST API model, as API Gateway does. */
import type { ApiMethod, ApiResourceNode } from './api-model';

const paramName = (pathPart: string) => /^\{(.+?)\+?\}$/.exec(pathPart)?.[1];
const isGreedy = (pathPart: string) => /^\{.+\+\}$/.test(pathPart);
const isParam = (pathPart: string) => /^\{.+\}$/.test(pathPart);

export interface ResourceMatch {
  readonly node: ApiResourceNode;
  readonly pathParameters: Record<string, string>;
}

/**
 * Finds the resource for decoded path segments. At each level a static path part wins over a
 * `{param}` sibling, which wins over a `{proxy+}` sibling; when the static branch has no resource for
 * the rest of the path, the parameter branch is tried.
 */
export function matchResource(root: ApiResourceNode, segments: readonly string[]): ResourceMatch | undefined {
  const walk = (node: ApiResourceNode, i: number, params: Record<string, string>): ResourceMatch | undefined => {
    if (i === segments.length) return { node, pathParameters: params };
    const seg = segments[i]!;
    const staticChild = node.children.find((c) => !isParam(c.pathPart) && c.pathPart === seg);
    if (staticChild) {
      const m = walk(staticChild, i + 1, params);
      if (m) return m;
    }
    const paramChild = node.children.find((c) => isParam(c.pathPart) && !isGreedy(c.pathPart));
    if (paramChild) {
      const m = walk(paramChild, i + 1, { ...params, [paramName(paramChild.pathPart)!]: seg });
      if (m) return m;
    }
    const greedy = node.children.find((c) => isGreedy(c.pathPart));
    if (greedy) return { node: greedy, pathParameters: { ...params, [paramName(greedy.pathPart)!]: segments.slice(i).join('/') } };
    return undefined;
  };
  return walk(root, 0, {});
}

/** The method a resource serves for `httpMethod` (ANY as a fallback). */
export function methodFor(node: ApiResourceNode, httpMethod: string): ApiMethod | undefined {
  return node.methods.get(httpMethod.toUpperCase()) ?? node.methods.get('ANY');
}
