'use strict';
// The template check CyTube runs on "typechecked" events (json-typecheck as
// used by src/io/ioserver.js typecheckedOn). A template maps key -> "type" or
// "type,optional"; extra keys are an error too. Returns null when the value
// fits, otherwise the TypeError text CyTube puts after
// "Unexpected error for message <event>: ".

function typeName(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function check(value, template) {
  if (typeName(value) !== typeName(template)) {
    return `Expected type ${typeName(template)}, got ${typeName(value)}`;
  }
  if (typeName(template) !== 'object') return null;
  for (const key of Object.keys(template)) {
    const expect = template[key];
    if (!Object.prototype.hasOwnProperty.call(value, key)) {
      if (expect.indexOf('optional') === -1) return `Missing key: ${expect}:${key}`;
      continue;
    }
    const actual = typeName(value[key]);
    if (expect.indexOf(actual) === -1 && expect.indexOf('*') === -1) {
      return `Expected key ${key} to be of type ${expect}, instead got ${actual}`;
    }
  }
  for (const key of Object.keys(value)) {
    if (!Object.prototype.hasOwnProperty.call(template, key)) return `Extra key: ${key}`;
  }
  return null;
}

module.exports = { check };
