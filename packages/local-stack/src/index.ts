/**
 * Public surface of the local stack: the whole stack from a synthesized template (startLocalStack), and
 * the pieces that tests and tools use on their own (the emulators, the template reader, log helpers).
 */
export {
  DEFAULT_API_KEYS,
  LambdaInvocationError,
  startLocalStack,
  type InvocationOutcome,
  type InvocationRecord,
  type LocalStack,
  type LocalStackOptions,
  type RouteInfo,
} from './local-stack';
export { checkJava, freePort, JavaRequirementError, startDynamoDbLocal, startSqsEmulator, stopChild, type RunningEmulator } from './emulators';
export {
  createLocalResources,
  functionEnvironment,
  loadSynthesizedStack,
  resolveValue,
  resourcesOfType,
  tableInput,
  type CfnResource,
  type CfnTemplate,
  type LocalResources,
  type SynthesizedStack,
} from './template';
export { ADMIN_CREDENTIALS, functionCredentials, startIamProxies, type Credentials, type LocalIam } from './iam-local';
export { evaluate, functionRoles, type Decision, type FunctionRole, type PolicyStatement } from './iam-policy';
export { accessDenied, requiredAuthorizations, startIamProxy, type IamCaller, type RunningIamProxy } from './iam-proxy';
export { shortId, type LogFn } from './util';
