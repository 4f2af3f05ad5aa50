// Validates the message and HTTP contracts with real parsers, then checks every example
// against its schema. Run through validate.sh, which installs the parsers into docs/.tools.
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const { createRequire } = require('node:module');

const docs = __dirname;
// The parsers live in docs/.tools/node_modules, not beside this file.
const need = createRequire(path.join(process.env.TOOLS_DIR || path.join(docs, '.tools'), 'package.json'));
const { Parser, fromFile, DiagnosticSeverity } = need('@asyncapi/parser');
const SwaggerParser = need('@apidevtools/swagger-parser');
const Ajv2020 = need('ajv/dist/2020').default;
const addFormats = need('ajv-formats').default;

const SCHEMA_FORMAT = 'application/schema+json;version=draft-2020-12';
let failures = 0;
const fail = (what, detail) => {
  failures += 1;
  console.error(`FAIL ${what}${detail ? `\n  ${detail}` : ''}`);
};

// Strict Ajv: unknown keywords, ignored keywords and bad patterns are errors, not silence.
// Union types are plain JSON Schema; a `required` in an if/then names a property declared
// beside it, which strictRequired cannot see.
function newAjv() {
  const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, strictRequired: false, allErrors: true });
  addFormats(ajv);
  return ajv;
}

// 1. Every schema file compiles on its own (they reference nothing outside themselves, so
//    any validator can load one file without a resolver).
const schemaDir = path.join(docs, 'schemas');
const byId = newAjv();
for (const file of fs.readdirSync(schemaDir).filter((f) => f.endsWith('.json')).sort()) {
  try {
    const schema = JSON.parse(fs.readFileSync(path.join(schemaDir, file), 'utf8'));
    const expectedId = `https://weibo-relay.invalid/schemas/${file}`;
    if (schema.$id !== expectedId) fail(`schemas/${file}`, `$id should be ${expectedId}`);
    if (schema.$schema !== 'https://json-schema.org/draft/2020-12/schema') fail(`schemas/${file}`, '$schema should be draft 2020-12');
    newAjv().compile(schema);
    byId.addSchema(schema);
  } catch (e) {
    fail(`schemas/${file}`, e.message);
  }
}

// Checks `value` against a schema: a file's schema by $id when it has one, else compiled alone.
function check(what, schema, value) {
  let validate;
  try {
    validate = (schema && schema.$id && byId.getSchema(schema.$id)) || newAjv().compile(schema);
  } catch (e) {
    return fail(what, `schema does not compile: ${e.message}`);
  }
  if (!validate(value)) fail(what, byId.errorsText(validate.errors, { dataVar: 'example' }));
}

async function asyncapi() {
  const file = path.join(docs, 'asyncapi.yaml');
  const parser = new Parser();
  // The parser knows AsyncAPI schemas and draft-07 only; for 2020-12 payloads it would only
  // warn that nobody checked them. This parser checks them with Ajv's 2020-12 meta-schema.
  parser.registerSchemaParser({
    getMimeTypes: () => [SCHEMA_FORMAT],
    parse: async (input) => input.data,
    validate: async (input) => {
      try {
        newAjv().compile(input.data);
        return [];
      } catch (e) {
        return [{ message: e.message, path: input.path }];
      }
    },
  });
  const { document, diagnostics } = await fromFile(parser, file).parse();
  for (const d of diagnostics) {
    const where = `asyncapi.yaml ${d.path.join('.')}: ${d.message} (${d.code})`;
    if (d.severity <= DiagnosticSeverity.Warning) fail(where);
    else console.log(`note ${where}`);
  }
  if (!document) return fail('asyncapi.yaml', 'the parser produced no document');
  const messages = document.json().components.messages;
  let examples = 0;
  for (const [name, message] of Object.entries(messages)) {
    const named = new Set((message.examples || []).map((e) => e.name));
    for (const extra of Object.keys(message['x-example-properties'] || {}).filter((n) => !named.has(n))) {
      fail(`message ${name}`, `x-example-properties.${extra} names no example`);
    }
    if (message.payload.schemaFormat !== SCHEMA_FORMAT) fail(`message ${name}`, `schemaFormat should be ${SCHEMA_FORMAT}`);
    for (const [i, example] of (message.examples || []).entries()) {
      const what = `asyncapi.yaml message ${name} example ${example.name || i}`;
      if ('payload' in example) check(`${what} payload`, message.payload.schema, example.payload);
      if ('headers' in example) check(`${what} headers`, message.headers.schema, example.headers);
      // AMQP basic properties have no place in AsyncAPI's example object: the message's
      // x-example-properties holds them by example name, checked against its
      // x-amqp-properties schema.
      const properties = (message['x-example-properties'] || {})[example.name];
      if (properties === undefined) fail(what, 'no x-example-properties entry');
      else check(`${what} properties`, message['x-amqp-properties'], properties);
      examples += 1;
    }
  }
  console.log(`asyncapi.yaml: ${document.version()}, ${document.channels().length} channels, ${document.operations().length} operations, ${Object.keys(messages).length} messages, ${examples} examples checked`);
}

async function openapi(name) {
  const file = path.join(docs, name);
  let api;
  try {
    // Validates against the OpenAPI 3.1 schema and resolves every $ref (files included).
    api = await SwaggerParser.validate(file);
  } catch (e) {
    return fail(name, e.message);
  }
  let examples = 0;
  const media = (where, content) => {
    for (const [type, m] of Object.entries(content || {})) {
      for (const [exampleName, ex] of Object.entries(m.examples || {})) {
        check(`${name} ${where} ${type} example ${exampleName}`, m.schema, ex.value);
        examples += 1;
      }
    }
  };
  for (const [p, item] of Object.entries(api.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (op.requestBody) media(`${method.toUpperCase()} ${p} request`, op.requestBody.content);
      for (const [status, res] of Object.entries(op.responses || {})) media(`${method.toUpperCase()} ${p} ${status}`, res.content);
    }
  }
  console.log(`${name}: ${api.openapi}, ${Object.keys(api.paths).length} paths, ${examples} examples checked`);
}

(async () => {
  await asyncapi();
  await openapi('openapi.yaml');
  await openapi('gateway-openapi.yaml');
  if (failures) {
    console.error(`${failures} problem(s)`);
    process.exit(1);
  }
  console.log('docs: valid');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
