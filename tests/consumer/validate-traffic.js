#!/usr/bin/env node
/* Strict check of recorded answers against api/openapi.yaml, with OpenAPI 3.0.3 semantics exactly
 * (issue 18), next to Prism's lenient one:
 *
 *   node validate-traffic.js SPEC TRAFFIC.jsonl        every answer of the pytest suite
 *   node validate-traffic.js --self-test SPEC TRAFFIC  the same answers against SPEC with `null`
 *        taken out of every nullable enum: must FAIL (a validator that stopped seeing the
 *        defect consumers hit would otherwise pass silently)
 *
 * TRAFFIC: one JSON object a line, {method, path, status, headers, body, streamed, truncated}
 * (tests/api/helpers.py records it when MB_TRAFFIC_LOG is set).
 *
 * Semantics (what strict consumer validators do, and what Prism lets through):
 *   - `nullable: true` adds null to the TYPE only; an `enum` must list null itself, or a null
 *     value is rejected;
 *   - `additionalProperties` exactly as declared (absent = allowed);
 *   - `format`: uuid, date-time, date, email, uri, hostname, ipv4, ipv6 checked (ajv-formats);
 *     int32/int64 ranges checked; an unknown format is an error in the contract;
 *   - every response header declared `required: true` must be present, and every declared
 *     header present must match its schema;
 *   - the status must be documented (exact, then 4XX/5XX, then default), the Content-Type
 *     must be one the response declares, and a JSON body must match its schema.
 * Exit 0 when every answer conforms; 1 with the first violations otherwise (2: usage).
 */
'use strict';
const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');
const Ajv = require('ajv').default;
const addFormats = require('ajv-formats').default;

const args = process.argv.slice(2);
const selfTest = args[0] === '--self-test';
if (selfTest) args.shift();
if (args.length !== 2) {
  console.error('usage: validate-traffic.js [--self-test] SPEC TRAFFIC.jsonl');
  process.exit(2);
}
const [specPath, trafficPath] = args;
const spec = yaml.load(fs.readFileSync(specPath, 'utf8'));
if (!/^3\.0\./.test(spec.openapi || '')) {
  console.error(`validate-traffic: ${specPath} is OpenAPI ${spec.openapi}, not 3.0.x`);
  process.exit(2);
}

// --self-test: the contract as it was before issue 18 (no null in nullable enums).
function stripNullFromEnums(node) {
  if (Array.isArray(node)) return node.forEach(stripNullFromEnums);
  if (node && typeof node === 'object') {
    if (node.nullable === true && Array.isArray(node.enum)) node.enum = node.enum.filter((v) => v !== null);
    Object.values(node).forEach(stripNullFromEnums);
  }
}
// Every nullable enum of the contract, as it is and with null taken out (for --self-test).
const nullableEnums = [];
(function collect(node, where) {
  if (Array.isArray(node)) return node.forEach((v, i) => collect(v, `${where}/${i}`));
  if (node && typeof node === 'object') {
    if (node.nullable === true && Array.isArray(node.enum)) {
      const stripped = JSON.parse(JSON.stringify(node));
      stripped.enum = stripped.enum.filter((v) => v !== null);
      nullableEnums.push({ where, asIs: JSON.parse(JSON.stringify(node)), stripped });
    }
    for (const [k, v] of Object.entries(node)) collect(v, `${where}/${k}`);
  }
})(spec, '#');
if (selfTest) stripNullFromEnums(spec);

// --- OpenAPI 3.0 Schema Object -> JSON Schema (draft-07, as ajv reads it) ----------------------
const REF = 'openapi';
function convert(node) {
  if (Array.isArray(node)) return node.map(convert);
  if (!node || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$ref') {
      if (!v.startsWith('#/components/schemas/')) throw new Error(`unsupported $ref ${v}`);
      out.$ref = `${REF}#/definitions/${v.slice('#/components/schemas/'.length)}`;
    } else if (k === 'nullable' || k === 'example' || k === 'xml' || k === 'externalDocs' || k === 'discriminator') {
      // nullable is applied below; the others are annotations in 3.0
    } else if (k === 'properties' || k === 'definitions') {
      out[k] = Object.fromEntries(Object.entries(v).map(([n, s]) => [n, convert(s)]));
    } else if (typeof v === 'object') {
      out[k] = convert(v);
    } else {
      out[k] = v;
    }
  }
  if (node.nullable === true) {
    // OpenAPI 3.0.3: nullable adds null to the allowed TYPES; `enum` is kept as declared, so a
    // null value must also be listed there (as strict validators read it).
    if (out.type !== undefined) out.type = [].concat(out.type, 'null');
    else if (out.$ref || out.allOf || out.oneOf || out.anyOf) {
      const inner = { ...out };
      for (const k of Object.keys(out)) delete out[k];
      out.anyOf = [inner, { type: 'null' }];
    }
  }
  return out;
}

const ajv = new Ajv({ strict: true, strictTypes: false, allErrors: true, validateFormats: true });
addFormats(ajv);
ajv.addFormat('int32', { type: 'number', validate: (n) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
ajv.addFormat('int64', { type: 'number', validate: (n) => Number.isInteger(n) });
ajv.addFormat('float', { type: 'number', validate: () => true });
ajv.addFormat('double', { type: 'number', validate: () => true });
ajv.addFormat('byte', /^[A-Za-z0-9+/]*={0,2}$/);
ajv.addFormat('binary', true);
ajv.addFormat('password', true);
ajv.addSchema({ $id: REF, definitions: convert((spec.components && spec.components.schemas) || {}) });
ajv.getSchema(REF); // compile every component schema now: a keyword or format ajv does not know fails here

const compiled = new Map();
function validatorFor(schema) {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(convert(schema));
    compiled.set(schema, v);
  }
  return v;
}

function deref(obj) {
  while (obj && obj.$ref) {
    const parts = obj.$ref.replace(/^#\//, '').split('/');
    obj = parts.reduce((o, p) => o[p.replace(/~1/g, '/').replace(/~0/g, '~')], spec);
  }
  return obj;
}

// --- matching an answer to its operation and response ------------------------------------------
const templates = Object.keys(spec.paths).map((t) => {
  const segs = t.split('/');
  return { t, segs, literal: segs.filter((s) => !s.startsWith('{')).length };
});
function matchPath(p) {
  const segs = p.split('/');
  let best = null;
  for (const tpl of templates) {
    if (tpl.segs.length !== segs.length) continue;
    const ok = tpl.segs.every((s, i) => (s.startsWith('{') ? segs[i] !== '' : s === decodeURIComponent(segs[i])));
    if (ok && (!best || tpl.literal > best.literal)) best = tpl;
  }
  return best && best.t;
}

const mediaType = (ct) => (ct || '').split(';')[0].trim().toLowerCase();
const isJson = (mt) => mt === 'application/json' || /\+json$/.test(mt);

function checkHeader(name, hdef, value, problems) {
  hdef = deref(hdef);
  if (value === undefined) {
    if (hdef.required) problems.push(`required header ${name} missing`);
    return;
  }
  if (!hdef.schema) return;
  const schema = deref(hdef.schema);
  let v = value;
  if (schema.type === 'integer' || schema.type === 'number') {
    v = /^-?\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
  }
  const validate = validatorFor(hdef.schema);
  if (!validate(v)) problems.push(`header ${name}: ${ajv.errorsText(validate.errors, { dataVar: name })}`);
}

function check(rec) {
  const tpl = matchPath(rec.path);
  if (!tpl) return { skip: 'path not in the contract' };
  const op = spec.paths[tpl][rec.method.toLowerCase()];
  if (!op) return { skip: 'method not in the contract' };
  const where = `${rec.method} ${tpl} -> ${rec.status}`;
  const st = String(rec.status);
  const resp = deref(op.responses[st] || op.responses[`${st[0]}XX`] || op.responses.default);
  if (!resp) return { where, problems: [`status ${st} not documented (has ${Object.keys(op.responses).join(',')})`] };
  const problems = [];
  for (const [name, hdef] of Object.entries(resp.headers || {})) {
    if (name.toLowerCase() === 'content-type') continue;
    checkHeader(name, hdef, rec.headers[name.toLowerCase()], problems);
  }
  const content = resp.content || {};
  const mt = mediaType(rec.headers['content-type']);
  const hasBody = rec.body !== null && rec.body !== undefined && rec.body !== '';
  if (Object.keys(content).length === 0) {
    if (hasBody) problems.push(`a body (${mt || 'no Content-Type'}) where the contract declares none`);
    return { where, problems };
  }
  if (rec.method === 'HEAD' || (!hasBody && rec.streamed)) return { where, problems };
  const declared = Object.keys(content).find((k) => k.toLowerCase() === mt) ||
    Object.keys(content).find((k) => k.endsWith('/*') && mt.startsWith(k.slice(0, -1))) ||
    (content['*/*'] ? '*/*' : undefined);
  if (!declared) {
    problems.push(`Content-Type ${mt || '(none)'} not declared (has ${Object.keys(content).join(', ')})`);
    return { where, problems };
  }
  if (!isJson(mt) || rec.truncated || !content[declared].schema) return { where, problems };
  let doc;
  try {
    doc = JSON.parse(rec.body);
  } catch (e) {
    problems.push(`${mt} body is not JSON: ${e.message}`);
    return { where, problems };
  }
  const validate = validatorFor(content[declared].schema);
  if (!validate(doc)) {
    for (const e of validate.errors.slice(0, 5)) {
      let got = e.instancePath.split('/').slice(1).reduce((o, k) => (o == null ? o : o[k]), doc);
      got = JSON.stringify(got);
      problems.push(`body${e.instancePath || ''} ${e.message}${e.params && e.params.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : ''} (got ${got && got.length > 80 ? got.slice(0, 77) + '...' : got})`);
    }
  }
  return { where, problems };
}

// --- main --------------------------------------------------------------------------------------
let lines;
try {
  lines = fs.readFileSync(trafficPath, 'utf8').split('\n').filter(Boolean);
} catch (e) {
  console.error(`validate-traffic: cannot read ${trafficPath}: ${e.message}`);
  process.exit(1);
}
let checked = 0;
let skipped = 0;
const bad = new Map(); // "where: problem" -> count
const ops = new Set();
for (const line of lines) {
  const rec = JSON.parse(line);
  const r = check(rec);
  if (r.skip) {
    skipped++;
    continue;
  }
  checked++;
  ops.add(r.where.replace(/ -> .*/, ''));
  for (const p of r.problems) {
    const key = `${r.where}: ${p}`;
    bad.set(key, (bad.get(key) || 0) + 1);
  }
}
const name = path.basename(specPath);
if (checked === 0) {
  console.error(`validate-traffic: no recorded answer matched ${name}: nothing was checked`);
  process.exit(1);
}
const nbad = [...bad.values()].reduce((a, b) => a + b, 0);
if (selfTest) {
  // 1. Each nullable enum alone: null passes as the contract has it, and is refused without
  //    null in the enum (what strict consumer validators do), whatever the traffic holds.
  const lenient = [];
  for (const e of nullableEnums) {
    const listed = e.asIs.enum.includes(null);
    if (ajv.compile(convert(e.asIs))(null) !== listed) lenient.push(`${e.where}: null ${listed ? 'refused though' : 'accepted though not'} in the enum`);
    if (ajv.compile(convert(e.stripped))(null)) lenient.push(`${e.where}: null accepted though the enum does not list it`);
  }
  if (nullableEnums.length === 0 || lenient.length) {
    console.error(`validate-traffic --self-test: the validator does not apply OpenAPI 3.0 nullable+enum semantics:\n  ${lenient.join('\n  ') || 'no nullable enum in the contract to test'}`);
    process.exit(1);
  }
  // 2. The recorded answers against that contract: the nulls they carry are refused.
  const hits = [...bad.keys()].filter((k) => /must be equal to one of the allowed values.*got null/.test(k));
  console.log(`validate-traffic --self-test: ok, ${nullableEnums.length} nullable enums without null refuse null` +
    (hits.length ? `; ${hits.length} kinds of recorded answers refused then, e.g. ${hits[0]}` : '; no recorded answer carries such a null'));
  process.exit(0);
}
if (bad.size) {
  console.error(`validate-traffic: ${nbad} violation(s) of ${name} (OpenAPI 3.0 semantics, ajv) in ${checked} answers:`);
  for (const [k, n] of [...bad.entries()].slice(0, 60)) console.error(`  ${k}${n > 1 ? ` (x${n})` : ''}`);
  if (bad.size > 60) console.error(`  ... and ${bad.size - 60} more kinds`);
  process.exit(1);
}
console.log(`validate-traffic: ${checked} answers of ${ops.size} operations conform to ${name} (strict OpenAPI 3.0: nullable+enum, additionalProperties, formats, required headers); ${skipped} outside the contract skipped`);
