/**
 * The identity-based IAM policies of each function's execution role, read from the synthesized template,
 * and a pure evaluator for them: is `action` on `resource` allowed?
 *
 * Supported: AWS::IAM::Policy resources attached to the role (`Roles`) and the role's inline `Policies`;
 * `Effect` Allow and Deny (an explicit Deny wins); `Action` / `Resource` as a string or a list, with `*` and
 * `?` wildcards (actions compared case-insensitively, resources case-sensitively, as IAM does); resource
 * values built with Ref, Fn::GetAtt and Fn::Join, resolved to the local resources.
 * Not supported: `Condition` (a statement with a condition is skipped, so it never allows and never
 * denies), `NotAction` / `NotResource` (skipped the same way), managed policies (`ManagedPolicyArns`, e.g.
 * AWSLambdaBasicExecutionRole, which only covers CloudWatch Logs), permission boundaries, SCPs and
 * resource-based policies (queue policies, function policies).
 */
import { LOCAL_ACCOUNT } from './local-account';
import type { CfnTemplate } from './template';

export interface PolicyStatement {
  readonly effect: 'Allow' | 'Deny';
  readonly actions: readonly string[];
  readonly resources: readonly string[];
}

export interface FunctionRole {
  /** Logical id of the AWS::IAM::Role; also its local name. */
  readonly roleId: string;
  readonly statements: readonly PolicyStatement[];
  /** Statements left out, with the reason (a condition, NotAction, an unresolvable resource). */
  readonly skipped: readonly string[];
}

export type Decision = { readonly allowed: true } | { readonly allowed: false; readonly reason: 'explicit-deny' | 'no-allow' };

const asList = (v: unknown): unknown[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** `*` and `?` wildcards of IAM, nothing else special. */
function globToRegExp(pattern: string, caseInsensitive: boolean): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, caseInsensitive ? 'i' : '');
}

export const actionMatches = (pattern: string, action: string) => globToRegExp(pattern, true).test(action);
export const resourceMatches = (pattern: string, resource: string) => globToRegExp(pattern, false).test(resource);

/** Allowed when some Allow statement covers action and resource and no Deny statement does. */
export function evaluate(statements: readonly PolicyStatement[], action: string, resource: string): Decision {
  const covers = (s: PolicyStatement) =>
    s.actions.some((a) => actionMatches(a, action)) && s.resources.some((r) => resourceMatches(r, resource));
  if (statements.some((s) => s.effect === 'Deny' && covers(s))) return { allowed: false, reason: 'explicit-deny' };
  if (statements.some((s) => s.effect === 'Allow' && covers(s))) return { allowed: true };
  return { allowed: false, reason: 'no-allow' };
}

/** The role ARN's principal as AWS names a Lambda function's caller in its error messages. */
export function assumedRoleArn(roleId: string, functionId: string): string {
  return `arn:aws:sts::${LOCAL_ACCOUNT}:assumed-role/${roleId}/${functionId}`;
}

/**
 * Each function's role and its statements, by function logical id. `resolve` turns a template value
 * (a string or an intrinsic) into a local ARN and throws when it cannot.
 */
export function functionRoles(template: CfnTemplate, resolve: (value: unknown) => string): Map<string, FunctionRole> {
  const policiesOfRole = new Map<string, unknown[]>();
  const attach = (roleId: string, doc: unknown) => policiesOfRole.set(roleId, [...(policiesOfRole.get(roleId) ?? []), doc]);
  for (const [id, r] of Object.entries(template.Resources)) {
    if (r.Type === 'AWS::IAM::Role') {
      for (const p of asList(r.Properties?.Policies)) attach(id, (p as any)?.PolicyDocument);
    }
    if (r.Type === 'AWS::IAM::Policy') {
      for (const role of asList(r.Properties?.Roles)) {
        const roleId = (role as any)?.Ref;
        if (typeof roleId === 'string') attach(roleId, r.Properties?.PolicyDocument);
      }
    }
  }
  const roles = new Map<string, FunctionRole>();
  for (const [fnId, r] of Object.entries(template.Resources)) {
    if (r.Type !== 'AWS::Lambda::Function') continue;
    const roleId = r.Properties?.Role?.['Fn::GetAtt']?.[0];
    if (typeof roleId !== 'string') continue;
    const statements: PolicyStatement[] = [];
    const skipped: string[] = [];
    for (const doc of policiesOfRole.get(roleId) ?? []) {
      for (const [i, s] of asList((doc as any)?.Statement).entries()) {
        const st = s as Record<string, unknown>;
        const label = `statement ${i} of ${roleId}`;
        if (st.Condition !== undefined || st.NotAction !== undefined || st.NotResource !== undefined) {
          skipped.push(`${label}: Condition, NotAction and NotResource are not evaluated`);
          continue;
        }
        const resources: string[] = [];
        for (const value of asList(st.Resource)) {
          try {
            resources.push(resolve(value));
          } catch {
            skipped.push(`${label}: resource ${JSON.stringify(value)} has no local counterpart`);
          }
        }
        if (st.Effect !== 'Allow' && st.Effect !== 'Deny') continue;
        statements.push({ effect: st.Effect, actions: asList(st.Action).map(String), resources });
      }
    }
    roles.set(fnId, { roleId, statements, skipped });
  }
  return roles;
}
