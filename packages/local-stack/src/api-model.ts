/**
 * The REST API model built from the template: the resource tree of AWS::ApiGateway::Resource, the
 * AWS::ApiGateway::Method of each resource (API key requirement, integration and its function), the
 * AWS::ApiGateway::GatewayResponse resources and the stage name.
 */
import { createHash } from 'node:crypto';
import { resourcesOfType, type CfnTemplate } from './template';
import { functionIdOf, referencedId } from './util';

export interface ApiMethod {
  readonly logicalId: string;
  readonly httpMethod: string;
  readonly apiKeyRequired: boolean;
  readonly authorizationType: string;
  readonly integrationType: string;
  /** Target of an AWS_PROXY / AWS Lambda integration. */
  readonly functionId?: string;
  readonly integration: Record<string, any>;
}

export interface ApiResourceNode {
  /** Logical id of the AWS::ApiGateway::Resource; the RestApi's id for the root. */
  readonly logicalId: string;
  readonly pathPart: string;
  /** Resource path as API Gateway reports it: `/api/payments/{paymentID}`. */
  readonly path: string;
  readonly children: ApiResourceNode[];
  readonly methods: Map<string, ApiMethod>;
}

export interface GatewayResponseDef {
  readonly type: string;
  readonly statusCode?: number;
  readonly templates: Record<string, string>;
  readonly parameters: Record<string, string>;
}

export interface RestApiModel {
  readonly logicalId: string;
  /** Ten-character id like a real API id, derived from the logical id. */
  readonly apiId: string;
  readonly name: string;
  readonly stageName: string;
  readonly root: ApiResourceNode;
  readonly gatewayResponses: Map<string, GatewayResponseDef>;
  readonly binaryMediaTypes: string[];
}

export interface RouteInfo {
  readonly method: string;
  readonly path: string;
  readonly functionId?: string;
  readonly apiKeyRequired: boolean;
  readonly integrationType: string;
}

/** Builds the REST API model of `restApiId` (default: the template's only AWS::ApiGateway::RestApi). */
export function buildRestApi(template: CfnTemplate, restApiId?: string): RestApiModel | undefined {
  const apis = resourcesOfType(template, 'AWS::ApiGateway::RestApi');
  if (apis.length === 0) return undefined;
  const [apiLogicalId, api] = restApiId ? apis.find(([id]) => id === restApiId) ?? [] : apis[0]!;
  if (!apiLogicalId || !api) throw new Error(`No AWS::ApiGateway::RestApi ${restApiId}`);
  const belongs = (props: Record<string, any> | undefined) => referencedId(props?.RestApiId) === apiLogicalId;

  const root: ApiResourceNode = { logicalId: apiLogicalId, pathPart: '', path: '/', children: [], methods: new Map() };
  const nodes = new Map<string, ApiResourceNode>([[apiLogicalId, root]]);
  const resources = resourcesOfType(template, 'AWS::ApiGateway::Resource').filter(([, r]) => belongs(r.Properties));
  // Parents before children, whatever the template order.
  let pending = resources;
  while (pending.length) {
    const next = pending.filter(([id, r]) => {
      const parentRef = r.Properties?.ParentId;
      const parentId = referencedId(parentRef);
      const parent = parentId ? nodes.get(parentId) : undefined;
      if (!parent) return true;
      const pathPart = String(r.Properties?.PathPart);
      const node: ApiResourceNode = {
        logicalId: id,
        pathPart,
        path: parent.path === '/' ? `/${pathPart}` : `${parent.path}/${pathPart}`,
        children: [],
        methods: new Map(),
      };
      parent.children.push(node);
      nodes.set(id, node);
      return false;
    });
    if (next.length === pending.length) throw new Error(`API resources with unknown parents: ${next.map(([id]) => id).join(', ')}`);
    pending = next;
  }

  for (const [id, r] of resourcesOfType(template, 'AWS::ApiGateway::Method')) {
    const p = r.Properties ?? {};
    if (!belongs(p)) continue;
    const node = nodes.get(referencedId(p.ResourceId) ?? '');
    if (!node) continue;
    const integration = (p.Integration ?? {}) as Record<string, any>;
    node.methods.set(String(p.HttpMethod).toUpperCase(), {
      logicalId: id,
      httpMethod: String(p.HttpMethod).toUpperCase(),
      apiKeyRequired: p.ApiKeyRequired === true || p.ApiKeyRequired === 'true',
      authorizationType: String(p.AuthorizationType ?? 'NONE'),
      integrationType: String(integration.Type ?? 'MOCK'),
      functionId: functionIdOf(template, integration.Uri),
      integration,
    });
  }

  const gatewayResponses = new Map<string, GatewayResponseDef>();
  for (const [, r] of resourcesOfType(template, 'AWS::ApiGateway::GatewayResponse')) {
    const p = r.Properties ?? {};
    if (!belongs(p)) continue;
    gatewayResponses.set(String(p.ResponseType), {
      type: String(p.ResponseType),
      statusCode: p.StatusCode !== undefined ? Number(p.StatusCode) : undefined,
      templates: p.ResponseTemplates ?? {},
      parameters: p.ResponseParameters ?? {},
    });
  }

  const stage = resourcesOfType(template, 'AWS::ApiGateway::Stage').find(([, r]) => belongs(r.Properties));
  const deployment = resourcesOfType(template, 'AWS::ApiGateway::Deployment').find(([, r]) => belongs(r.Properties));
  const stageName = String(stage?.[1].Properties?.StageName ?? deployment?.[1].Properties?.StageName ?? 'local');

  return {
    logicalId: apiLogicalId,
    apiId: createHash('sha1').update(apiLogicalId).digest('base64url').replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 10),
    name: String(api.Properties?.Name ?? apiLogicalId),
    stageName,
    root,
    gatewayResponses,
    binaryMediaTypes: (api.Properties?.BinaryMediaTypes ?? []).map((t: string) => t.replace(/~1/g, '/')),
  };
}

export function listRoutes(model: RestApiModel): RouteInfo[] {
  const out: RouteInfo[] = [];
  const walk = (n: ApiResourceNode) => {
    for (const m of n.methods.values()) {
      out.push({ method: m.httpMethod, path: n.path, functionId: m.functionId, apiKeyRequired: m.apiKeyRequired, integrationType: m.integrationType });
    }
    n.children.forEach(walk);
  };
  walk(model.root);
  return out;
}
