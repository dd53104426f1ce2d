#!/usr/bin/env node
/* Writes the Portman configuration of the consumer suite (issue 18) for SPEC:
 *
 *   node make-portman-config.js SPEC > portman-config.json
 *
 * What a consumer team's generated suite does, with the contract's own examples as inputs:
 *   - contract tests on every operation: the status, the Content-Type, the JSON body against
 *     its schema, and every response header the contract declares `required`;
 *   - writes on throwaway data: what a request creates (user, partner, product, package,
 *     purchase, activation, webhook...) is taken from its answer (assignVariables) and the
 *     requests that change or delete something act on that, never on the demo rows others read;
 *   - variations: no token -> 401 on every secured operation; a token of another partner
 *     (Fabrikam) on Contoso's ids -> 404 on every partner read; limit=0 -> 422 on every list.
 * Variables the run supplies (newman --env-var): baseUrl, gaToken (Contoso global_admin),
 * operatorToken (operator), otherPartnerToken (a global_admin of ANOTHER partner).
 * The lists of operations come from SPEC, so an operation added to the contract is tested
 * without a change here (a new write may need an entry in AFTER_CREATE).
 */
'use strict';
const fs = require('fs');
const yaml = require('js-yaml');

const specPath = process.argv[2];
if (!specPath) {
  console.error('usage: make-portman-config.js SPEC');
  process.exit(2);
}
const spec = yaml.load(fs.readFileSync(specPath, 'utf8'));
const METHODS = ['get', 'put', 'post', 'patch', 'delete'];
const ops = [];
for (const [path, item] of Object.entries(spec.paths)) {
  for (const m of METHODS) {
    const op = item[m];
    if (!op) continue;
    const params = [...(item.parameters || []), ...(op.parameters || [])].map((p) =>
      p.$ref ? spec.components.parameters[p.$ref.split('/').pop()] : p);
    const secured = !(Array.isArray(op.security) && op.security.length === 0);
    ops.push({ id: op.operationId, method: m.toUpperCase(), path, params, secured, responses: op.responses });
  }
}
const byId = Object.fromEntries(ops.map((o) => [o.id, o]));
const ids = (pred) => ops.filter(pred).map((o) => o.id);

// Demo data (sql/demo/seed.sql): Contoso's benefits by product.
const BENEFIT = {
  software: 'dddddddd-0000-4000-8000-000000000001', // Windows Server 2022 Standard
  vs: 'dddddddd-0000-4000-8000-000000000006', // Visual Studio Enterprise (seats)
  incidents: 'dddddddd-0000-4000-8000-000000000008', // technical: product support incidents
  advisory: 'dddddddd-0000-4000-8000-000000000009', // technical: advisory hours
};

const pathVars = (vars) => Object.entries(vars).map(([key, value]) => ({ key, value }));
const overwrites = [];
const ow = (targets, o) => {
  for (const t of [].concat(targets)) if (byId[t]) overwrites.push({ openApiOperationId: t, ...o });
};

// The operator's operations use the operator's token; every other secured one Contoso's Global
// admin's. Set on each request (not on the collection), so that a variation can remove it.
ow(ids((o) => o.secured && o.path.startsWith('/v1/admin/')), { overwriteRequestSecurity: { bearer: { token: '{{operatorToken}}' } } });
ow(ids((o) => o.secured && !o.path.startsWith('/v1/admin/')), { overwriteRequestSecurity: { bearer: { token: '{{gaToken}}' } } });

// Seats live on the Visual Studio benefit; activations and support requests on technical ones.
ow(ids((o) => /\/assignments/.test(o.path)), { overwriteRequestPathVariables: pathVars({ benefitId: BENEFIT.vs }) });
ow(['activateBenefit'], { overwriteRequestPathVariables: pathVars({ benefitId: BENEFIT.incidents }) });
ow(ids((o) => /\/benefits\/\{benefitId\}\/support-requests/.test(o.path)), { overwriteRequestPathVariables: pathVars({ benefitId: BENEFIT.incidents }) });

// Unique values where a second run against the same environment would otherwise conflict.
ow(['createUser'], { overwriteRequestBody: [{ key: 'email', value: 'consumer-{{$guid}}@contoso.example' }] });
ow(['adminOnboardPartner'], {
  overwriteRequestBody: [
    { key: 'mpn_id', value: '{{{consumerMpnId}}}' },
    { key: 'account_email', value: 'admin-{{$guid}}@northwind.example' },
    { key: 'global_admin.email', value: 'ga-{{$guid}}@northwind.example' },
  ],
});
ow(['adminCreateProduct'], { overwriteRequestBody: [{ key: 'code', value: 'consumer-{{$guid}}' }] });
ow(['adminCreatePackage'], { overwriteRequestBody: [{ key: 'code', value: 'consumer-{{$guid}}' }] });
ow(['adminLoadProductKeys'], { overwriteRequestBody: [{ key: 'keys', value: ['CONSUMER-{{$guid}}'] }] });
ow(['createWebhook'], { overwriteRequestBody: [{ key: 'url', value: 'https://hooks.contoso.example/mpn-benefits/{{$guid}}' }] });

// Throwaway data: what a request created is what the next ones change or delete.
const assignVariables = [];
const assign = (id, name, prop = 'id') => {
  if (byId[id]) assignVariables.push({ openApiOperationId: id, collectionVariables: [{ responseBodyProp: prop, name }] });
};
assign('createUser', 'newUserId');
assign('adminOnboardPartner', 'newPartnerId');
assign('adminCreateProduct', 'newProductId');
assign('adminCreatePackage', 'newPackageId');
assign('createPurchase', 'newPurchaseId');
assign('activateBenefit', 'activationId');
assign('createSupportRequest', 'supportRequestId');
assign('createWebhook', 'webhookId');
assign('pingWebhook', 'deliveryId');
const AFTER_CREATE = {
  updateUser: { userId: '{{newUserId}}' },
  deleteUser: { userId: '{{newUserId}}' },
  revokeUserTokens: { userId: '{{newUserId}}' },
  adminUpdatePartner: { partnerId: '{{newPartnerId}}' },
  adminRevokePartnerTokens: { partnerId: '{{newPartnerId}}' },
  adminUpdateProduct: { productId: '{{newProductId}}' },
  adminPutProductDownloads: { productId: '{{newProductId}}' },
  adminLoadProductKeys: { productId: '{{newProductId}}' },
  adminUpdatePackage: { packageId: '{{newPackageId}}' },
  renewPurchase: { purchaseId: '{{newPurchaseId}}' },
  cancelPurchase: { purchaseId: '{{newPurchaseId}}' },
  getActivation: { activationId: '{{activationId}}' },
  adminCompleteActivation: { activationId: '{{activationId}}' },
  adminRejectActivation: { activationId: '{{rejectActivationId}}' },
  getSupportRequest: { supportRequestId: '{{supportRequestId}}' },
  getWebhook: { webhookId: '{{webhookId}}' },
  updateWebhook: { webhookId: '{{webhookId}}' },
  deleteWebhook: { webhookId: '{{webhookId}}' },
  rotateWebhookSecret: { webhookId: '{{webhookId}}' },
  pingWebhook: { webhookId: '{{webhookId}}' },
  listWebhookDeliveries: { webhookId: '{{webhookId}}' },
  retryWebhookDelivery: { webhookId: '{{webhookId}}', deliveryId: '{{deliveryId}}' },
};
for (const [id, vars] of Object.entries(AFTER_CREATE)) ow([id], { overwriteRequestPathVariables: pathVars(vars) });
// The package bought is the one the operator just made (a one-month term: renewal is open).
ow(['createPurchase'], { overwriteRequestBody: [{ key: 'package_id', value: '{{newPackageId}}' }] });

// A second pending activation (advisory hours) for the operator to reject.
const operationPreRequestScripts = [];
if (byId.adminOnboardPartner) {
  operationPreRequestScripts.push({
    openApiOperationId: 'adminOnboardPartner',
    scripts: ["pm.collectionVariables.set('consumerMpnId', String(1000000000 + Math.floor(Math.random() * 8000000000)));"],
  });
}
if (byId.adminRejectActivation) {
  operationPreRequestScripts.push({
    openApiOperationId: 'adminRejectActivation',
    scripts: [`pm.sendRequest({
  url: pm.variables.get('baseUrl') + '/v1/partners/11111111-1111-4111-8111-111111111111/benefits/${BENEFIT.advisory}/activation',
  method: 'POST',
  header: { 'Authorization': 'Bearer ' + pm.variables.get('gaToken'), 'Content-Type': 'application/json' },
  body: { mode: 'raw', raw: '{}' }
}, function (err, res) {
  if (err || res.code !== 202) throw new Error('setting up a pending activation to reject: ' + (err || res.code + ' ' + res.text()));
  pm.collectionVariables.set('rejectActivationId', res.json().id);
});`],
  });
}

// Cancellation requests (issue 13): each flow buys a package of its own first (the operator makes
// a one-month package from the contract's example, Contoso buys it), so a pending request never
// blocks the purchases other requests use; the operator's complete/reject act on a request made
// for them.
const packageExample = JSON.stringify(
  spec.paths['/v1/admin/packages']?.post?.requestBody?.content?.['application/json']?.example || {});
const ownPurchase = (then) => `const pkg = Object.assign(${packageExample}, { code: 'consumer-cr-' + Date.now() + '-' + Math.floor(Math.random() * 1e9) });
const auth = (t) => ({ 'Authorization': 'Bearer ' + pm.variables.get(t), 'Content-Type': 'application/json' });
const base = pm.variables.get('baseUrl');
pm.sendRequest({ url: base + '/v1/admin/packages', method: 'POST', header: auth('operatorToken'), body: { mode: 'raw', raw: JSON.stringify(pkg) } }, function (err, res) {
  if (err || res.code !== 201) throw new Error('cancellation setup, package: ' + (err || res.code + ' ' + res.text()));
  pm.sendRequest({ url: base + '/v1/partners/11111111-1111-4111-8111-111111111111/purchases', method: 'POST', header: auth('gaToken'), body: { mode: 'raw', raw: JSON.stringify({ package_id: res.json().id }) } }, function (err2, res2) {
    if (err2 || res2.code !== 201) throw new Error('cancellation setup, purchase: ' + (err2 || res2.code + ' ' + res2.text()));
    const purchaseId = res2.json().id;
    ${then}
  });
});`;
const ownRequest = (variable) => ownPurchase(`pm.sendRequest({ url: base + '/v1/partners/11111111-1111-4111-8111-111111111111/cancellation-requests', method: 'POST', header: auth('gaToken'), body: { mode: 'raw', raw: JSON.stringify({ purchase_id: purchaseId, reason: 'Consumer suite', accept_no_refund: true }) } }, function (err3, res3) {
      if (err3 || res3.code !== 202) throw new Error('cancellation setup, request: ' + (err3 || res3.code + ' ' + res3.text()));
      pm.collectionVariables.set('${variable}', res3.json().id);
    });`);
if (byId.createCancellationRequest) {
  operationPreRequestScripts.push({ openApiOperationId: 'createCancellationRequest',
    scripts: [ownPurchase("pm.collectionVariables.set('crPurchaseId', purchaseId);")] });
  ow(['createCancellationRequest'], { overwriteRequestBody: [{ key: 'purchase_id', value: '{{crPurchaseId}}' }] });
  assign('createCancellationRequest', 'cancellationRequestId');
  ow(['getCancellationRequest'], { overwriteRequestPathVariables: pathVars({ requestId: '{{cancellationRequestId}}' }) });
}
for (const [id, variable] of [['adminRejectCancellationRequest', 'crRejectId'], ['adminCompleteCancellationRequest', 'crCompleteId']]) {
  if (!byId[id]) continue;
  operationPreRequestScripts.push({ openApiOperationId: id, scripts: [ownRequest(variable)] });
  ow([id], { overwriteRequestPathVariables: pathVars({ requestId: `{{${variable}}}` }) });
}

// --- tests ---------------------------------------------------------------------------------------
const contract = (extra = {}) => [
  { openApiOperation: '*::/*', ...extra, statusSuccess: { enabled: true } },
  { openApiOperation: '*::/*', contentType: { enabled: true } },
  { openApiOperation: '*::/*', jsonBody: { enabled: true } },
  { openApiOperation: '*::/*', schemaValidation: { enabled: true } },
  { openApiOperation: '*::/*', headersPresent: { enabled: true } },
];
const variationTests = (code) => [
  { openApiOperation: '*::/*', statusCode: { enabled: true, code } },
  { openApiOperation: '*::/*', contentType: { enabled: true } },
  { openApiOperation: '*::/*', jsonBody: { enabled: true } },
  { openApiOperation: '*::/*', schemaValidation: { enabled: true } },
  { openApiOperation: '*::/*', headersPresent: { enabled: true } },
];
const has = (o, code) => Object.prototype.hasOwnProperty.call(o.responses, code);
const variations = [];
const variation = (name, opIds, code, overwrites) => {
  if (opIds.length) {
    variations.push({
      openApiOperationIds: opIds,
      variations: [{ name, openApiResponse: String(code), overwrites, tests: { contractTests: variationTests(code) } }],
    });
  }
};
const isAdmin = (id) => byId[id].path.startsWith('/v1/admin/');
const operatorToken = { overwriteRequestSecurity: { bearer: { token: '{{operatorToken}}' } } };
// No token: 401 on every secured operation.
variation('NoToken', ids((o) => o.secured && has(o, '401')), 401, [{ overwriteRequestSecurity: { remove: true } }]);
// Another partner's token on Contoso's ids: 404 on every partner read.
variation('OtherPartnersToken',
  ids((o) => o.method === 'GET' && o.path.startsWith('/v1/partners/{partnerId}') && has(o, '404')), 404,
  [{ overwriteRequestSecurity: { bearer: { token: '{{otherPartnerToken}}' } } }]);
// A bad limit: 422 on every list.
const lists = ids((o) => o.method === 'GET' && o.params.some((p) => p.in === 'query' && p.name === 'limit') && has(o, '422'));
const badLimit = { overwriteRequestQueryParams: [{ key: 'limit', value: '0', overwrite: true, insert: true }] };
variation('BadLimit', lists.filter((id) => !isAdmin(id)), 422, [badLimit]);
variation('BadLimit', lists.filter(isAdmin), 422, [{ ...badLimit, ...operatorToken }]);

// The order a consumer's flow needs: things are made before they are used, deleted last.
const orderOfOperations = [
  'POST::/v1/partners/{partnerId}/users',
  'GET::/v1/partners/{partnerId}/users/{userId}',
  'PATCH::/v1/partners/{partnerId}/users/{userId}',
  'POST::/v1/partners/{partnerId}/users/{userId}/revoke-tokens',
  'DELETE::/v1/partners/{partnerId}/users/{userId}',
  'PUT::/v1/partners/{partnerId}/marketing-contact',
  'GET::/v1/partners/{partnerId}/marketing-contact',
  'POST::/v1/partners/{partnerId}/benefits/{benefitId}/support-requests',
  'POST::/v1/admin/products',
  'POST::/v1/admin/packages',
  'POST::/v1/partners/{partnerId}/webhooks',
  'GET::/v1/partners/{partnerId}/webhooks/{webhookId}',
  'PATCH::/v1/partners/{partnerId}/webhooks/{webhookId}',
  'POST::/v1/partners/{partnerId}/webhooks/{webhookId}/rotate-secret',
  'POST::/v1/partners/{partnerId}/webhooks/{webhookId}/ping',
  'GET::/v1/partners/{partnerId}/webhooks/{webhookId}/deliveries',
  'POST::/v1/partners/{partnerId}/webhooks/{webhookId}/deliveries/{deliveryId}/retry',
  'DELETE::/v1/partners/{partnerId}/webhooks/{webhookId}',
  'POST::/v1/partners/{partnerId}/cancellation-requests',
  'GET::/v1/partners/{partnerId}/cancellation-requests/{requestId}',
  'POST::/v1/partners/{partnerId}/benefits/{benefitId}/assignments',
  'GET::/v1/partners/{partnerId}/benefits/{benefitId}/assignments/{userId}',
  'DELETE::/v1/partners/{partnerId}/benefits/{benefitId}/assignments/{userId}',
];
const orderOfFolders = ['System', 'Me', 'Catalog', 'Partners', 'Users', 'Benefits', 'Activations', 'Admin',
  'Purchases', 'Marketing', 'Support', 'Audit', 'Events'];

const config = {
  version: 1.0,
  tests: { contractTests: contract(), contentTests: [], extendTests: [], variationTests: variations },
  assignVariables,
  overwrites,
  operationPreRequestScripts,
  globals: {
    orderOfOperations,
    orderOfFolders,
    stripResponseExamples: true,
  },
};
process.stdout.write(JSON.stringify(config, null, 2) + '\n');
