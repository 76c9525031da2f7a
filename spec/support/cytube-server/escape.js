'use strict';
// CyTube's chat text pipeline (src/xss.js, src/channel/chat.js formatMessage and
// filterMessage in 3.86), rebuilt so the echo a bot gets back is byte-for-byte
// what the real server sends:
//
//   1. escape & < > " ' ( ) as entities;
//   2. cut URLs out (replaced by a placeholder) and run the channel's chat
//      filters over the rest;
//   3. put the URLs back, as <a href=...> links when enable_link_regex is on;
//   4. run the result through sanitize-html, which decodes entities and
//      re-escapes only & < > in text. So ' " ( ) come back literal and only
//      &amp; &lt; &gt; survive (protocol doc §7.1, verified there).
//
// Step 4 is a small sanitizer of our own: the only tags that can reach it come
// from filters and the link step (user text is fully escaped by step 1), so
// it needs to keep allowed tags, normalise attribute quoting, drop what is not
// allowed and balance tags the way htmlparser2 does.

const TEXT_ESCAPES = {
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;',
  "'": '&#39;', '(': '&#40;', ')': '&#41;',
};

// Step 1 (XSS.sanitizeText).
function escapeText(s) {
  return s.replace(/[&<>"'()]/g, (c) => TEXT_ESCAPES[c]);
}

// A URL as CyTube's chat module sees one: scheme://host-or-[v6][:port] followed
// by any number of /segments. It runs on the *escaped* text, so a query string
// keeps its &amp; (see the capture in join-chat.txt).
const LINK_RE = /(\w+:\/\/(?:[^:/[\]\s]+|\[[0-9a-f:]+\])(?::\d+)?(?:\/[^/\s]*)*)/gi;
const LINK_PLACEHOLDER = '\ueeee';
const LINK_PLACEHOLDER_RE = /\ueeee/g;

// Filters of a registered channel that never saved its own list
// (src/channel/filters.js DEFAULT_FILTERS). Replacements use \1 like CyTube's
// stored filters; compileFilter turns them into JavaScript $1.
const DEFAULT_FILTERS = [
  { name: 'monospace', source: '`(.+?)`', flags: 'g', replace: '<code>\\1</code>', active: true, filterlinks: false },
  { name: 'bold', source: '\\*(.+?)\\*', flags: 'g', replace: '<strong>\\1</strong>', active: true, filterlinks: false },
  { name: 'italic', source: '_(.+?)_', flags: 'g', replace: '<em>\\1</em>', active: true, filterlinks: false },
  { name: 'strike', source: '~~(.+?)~~', flags: 'g', replace: '<s>\\1</s>', active: true, filterlinks: false },
  { name: 'inline spoiler', source: '\\[sp\\](.*?)\\[\\/sp\\]', flags: 'ig', replace: '<span class="spoiler">\\1</span>', active: true, filterlinks: false },
];

// Validate and compile one filter. Returns null for an unusable one (bad regex),
// which CyTube also skips.
function compileFilter(f) {
  if (!f || typeof f.source !== 'string' || typeof f.replace !== 'string') return null;
  const flags = typeof f.flags === 'string' ? f.flags.replace(/[^gimsuy]/g, '').substring(0, 4) : 'g';
  let re;
  try {
    re = new RegExp(f.source, flags);
  } catch (e) {
    return null;
  }
  return {
    name: typeof f.name === 'string' ? f.name : f.source,
    source: f.source,
    flags,
    replace: f.replace,
    active: f.active !== false,
    filterlinks: !!f.filterlinks,
    re,
    jsReplace: f.replace.replace(/\\(\d)/g, '$$$1'),
  };
}

function compileFilters(list) {
  return (list || []).map(compileFilter).filter((f) => f !== null);
}

// FilterList.filter(text, links): on links only filters flagged filterlinks run.
function applyFilters(text, filters, forLink) {
  let out = text;
  for (const f of filters) {
    if (!f.active) continue;
    if (forLink && !f.filterlinks) continue;
    f.re.lastIndex = 0;
    out = out.replace(f.re, f.jsReplace);
  }
  return out;
}

// ---- step 4: the sanitize-html stand-in ------------------------------------

const ALLOWED_TAGS = new Set([
  'a', 'b', 'blockquote', 'br', 'code', 'del', 'em', 'font', 'i', 'img', 'ins',
  'kbd', 'li', 'mark', 'ol', 'p', 'pre', 's', 'small', 'span', 'strike',
  'strong', 'sub', 'sup', 'u', 'ul', 'marquee', 'center', 'h1', 'h2', 'h3',
  'h4', 'h5', 'h6', 'details', 'summary', 'section', 'button',
]);
const VOID_TAGS = new Set(['br', 'img', 'hr', 'wbr']);
const ALLOWED_ATTRS = {
  '*': new Set(['class', 'title']),
  a: new Set(['href', 'target', 'rel', 'name']),
  img: new Set(['src', 'alt', 'width', 'height']),
  font: new Set(['color', 'size', 'face']),
};
const ALLOWED_SCHEMES = new Set(['http', 'https', 'ftp', 'mailto']);

const NAMED_ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

function decodeEntities(s) {
  return s.replace(/&(#[0-9]+|#x[0-9a-f]+|[a-z][a-z0-9]*);/gi, (whole, body) => {
    if (body[0] === '#') {
      const code = body[1] === 'x' || body[1] === 'X'
        ? parseInt(body.substring(2), 16) : parseInt(body.substring(1), 10);
      if (!Number.isFinite(code) || code <= 0 || code > 0x10ffff) return whole;
      try {
        return String.fromCodePoint(code);
      } catch (e) {
        return whole;
      }
    }
    const named = NAMED_ENTITIES[body.toLowerCase()];
    return named === undefined ? whole : named;
  });
}

function escapeHtmlText(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escapeHtmlAttr(s) {
  return escapeHtmlText(s).replace(/"/g, '&quot;');
}

const TAG_RE = /<(\/?)([a-zA-Z][a-zA-Z0-9]*)((?:\s+[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?)*)\s*\/?>/g;
const ATTR_RE = /([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g;

function renderAttrs(tag, rawAttrs) {
  const out = [];
  ATTR_RE.lastIndex = 0;
  let m;
  while ((m = ATTR_RE.exec(rawAttrs)) !== null) {
    const name = m[1].toLowerCase();
    const allowed = (ALLOWED_ATTRS[tag] && ALLOWED_ATTRS[tag].has(name)) || ALLOWED_ATTRS['*'].has(name);
    if (!allowed) continue;
    const raw = m[2] !== undefined ? m[2] : m[3] !== undefined ? m[3] : m[4] !== undefined ? m[4] : '';
    const value = decodeEntities(raw);
    if (name === 'href' || name === 'src') {
      const scheme = /^\s*([a-z][a-z0-9+.-]*):/i.exec(value);
      if (scheme && !ALLOWED_SCHEMES.has(scheme[1].toLowerCase())) continue;
    }
    out.push(` ${name}="${escapeHtmlAttr(value)}"`);
  }
  return out.join('');
}

function sanitizeHtml(html) {
  const out = [];
  const stack = [];
  let pos = 0;
  const emitText = (text) => { if (text) out.push(escapeHtmlText(decodeEntities(text))); };
  TAG_RE.lastIndex = 0;
  let m;
  while ((m = TAG_RE.exec(html)) !== null) {
    emitText(html.substring(pos, m.index));
    pos = TAG_RE.lastIndex;
    const closing = m[1] === '/';
    const tag = m[2].toLowerCase();
    if (!ALLOWED_TAGS.has(tag)) continue; // discarded, its text stays
    if (closing) {
      // Close back to the matching open tag (closing what was left open inside
      // it); a close tag with no open partner is dropped.
      const at = stack.lastIndexOf(tag);
      if (at < 0) continue;
      while (stack.length > at) out.push(`</${stack.pop()}>`);
    } else {
      out.push(`<${tag}${renderAttrs(tag, m[3] || '')}>`);
      if (!VOID_TAGS.has(tag)) stack.push(tag);
    }
  }
  emitText(html.substring(pos));
  while (stack.length) out.push(`</${stack.pop()}>`);
  return out.join('');
}

// Steps 2-4 on already-escaped text.
function filterMessage(escaped, filters, convertLinks) {
  LINK_RE.lastIndex = 0;
  const links = escaped.match(LINK_RE) || [];
  const intermediate = escaped.replace(LINK_RE, LINK_PLACEHOLDER);
  let result = applyFilters(intermediate, filters, false);
  result = result.replace(LINK_PLACEHOLDER_RE, () => {
    const link = links.shift();
    if (!link) return '';
    const filtered = applyFilters(link, filters, true);
    if (filtered !== link) return filtered;
    if (!convertLinks) return link;
    return `<a href="${link}" target="_blank" rel="noopener noreferrer">${link}</a>`;
  });
  return sanitizeHtml(result);
}

// The whole pipeline: raw user text in, CyTube's `msg` HTML out.
function formatChatText(raw, { filters = [], convertLinks = true } = {}) {
  return filterMessage(escapeText(raw), filters, convertLinks);
}

module.exports = {
  escapeText,
  decodeEntities,
  sanitizeHtml,
  filterMessage,
  formatChatText,
  compileFilters,
  DEFAULT_FILTERS,
  LINK_RE,
};
