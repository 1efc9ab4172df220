/**
 * Text that cannot be encoded as UTF-8 (a lone UTF-16 surrogate, which JSON's \ud800 escape lets in):
 * no provider request, URL or DynamoDB attribute can carry it as given, so input holding it is refused.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export const isWellFormedText = (s: string): boolean => !LONE_SURROGATE.test(s);
