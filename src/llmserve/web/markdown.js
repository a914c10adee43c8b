// A small Markdown renderer for model replies. It builds DOM nodes with textContent only, never
// innerHTML, so any HTML in a reply is shown as text. Supported: fenced code blocks (also an
// unterminated one while a reply streams), headings, lists, block quotes, rules, paragraphs, and
// inline code, bold, italic and links (http, https and mailto only).

const FENCE = /^\s*(```|~~~)\s*([\w+#.-]*)\s*$/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^\s*>\s?(.*)$/;
const RULE = /^\s*([-*_])(\s*\1){2,}\s*$/;
const INLINE =
  /`([^`]+)`|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|\[([^\]]+)\]\(([^()\s]+)\)/g;
const SAFE_URL = /^(https?:|mailto:)/i;

function element(tag, children) {
  const node = document.createElement(tag);
  for (const child of children) node.append(child);
  return node;
}

function link(text, url) {
  if (!SAFE_URL.test(url)) return document.createTextNode(`[${text}](${url})`);
  const anchor = element("a", inline(text));
  anchor.href = url;
  anchor.target = "_blank";
  anchor.rel = "noopener noreferrer";
  return anchor;
}

// Inline spans of one line or paragraph, as a list of nodes.
function inline(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    const [, code, bold, bold2, em, em2, linkText, url] = match;
    if (code !== undefined) {
      const node = document.createElement("code");
      node.textContent = code;
      nodes.push(node);
    } else if (bold !== undefined || bold2 !== undefined) {
      nodes.push(element("strong", inline(bold ?? bold2)));
    } else if (em !== undefined || em2 !== undefined) {
      nodes.push(element("em", inline(em ?? em2)));
    } else {
      nodes.push(link(linkText, url));
    }
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function codeBlock(lines, language) {
  const code = document.createElement("code");
  code.textContent = lines.join("\n");
  if (language) code.className = `language-${language}`;
  return element("pre", [code]);
}

function paragraph(lines) {
  const nodes = [];
  lines.forEach((line, index) => {
    if (index > 0) nodes.push(document.createElement("br"));
    nodes.push(...inline(line));
  });
  return element("p", nodes);
}

// Consecutive lines matching `pattern`, starting at `start`: [items, next index].
function takeWhile(lines, start, pattern) {
  const items = [];
  let index = start;
  while (index < lines.length && pattern.test(lines[index])) {
    items.push(lines[index].match(pattern));
    index += 1;
  }
  return [items, index];
}

function list(lines, start) {
  const ordered = NUMBERED.test(lines[start]);
  const [matches, next] = takeWhile(lines, start, ordered ? NUMBERED : BULLET);
  const items = matches.map((m) => element("li", inline(ordered ? m[2] : m[1])));
  const node = element(ordered ? "ol" : "ul", items);
  if (ordered && matches[0][1] !== "1") node.start = Number(matches[0][1]);
  return [node, next];
}

function fencedCode(lines, start) {
  const [, fence, language] = lines[start].match(FENCE);
  let index = start + 1;
  const body = [];
  while (index < lines.length && lines[index].trim() !== fence) {
    body.push(lines[index]);
    index += 1;
  }
  return [codeBlock(body, language), index + 1];
}

function isBlockStart(line) {
  return [FENCE, HEADING, BULLET, NUMBERED, QUOTE, RULE].some((p) => p.test(line));
}

// One block starting at line `start`: [node or null, next index].
function block(lines, start) {
  const line = lines[start];
  if (line.trim() === "") return [null, start + 1];
  if (FENCE.test(line)) return fencedCode(lines, start);
  if (RULE.test(line)) return [document.createElement("hr"), start + 1];
  const heading = line.match(HEADING);
  if (heading) return [element(`h${heading[1].length}`, inline(heading[2])), start + 1];
  if (BULLET.test(line) || NUMBERED.test(line)) return list(lines, start);
  if (QUOTE.test(line)) {
    const [matches, next] = takeWhile(lines, start, QUOTE);
    return [element("blockquote", [renderMarkdown(matches.map((m) => m[1]).join("\n"))]), next];
  }
  let index = start + 1;
  while (index < lines.length && lines[index].trim() !== "" && !isBlockStart(lines[index])) {
    index += 1;
  }
  return [paragraph(lines.slice(start, index)), index];
}

// Markdown text as a DocumentFragment of safe nodes.
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let index = 0;
  while (index < lines.length) {
    const [node, next] = block(lines, index);
    if (node) fragment.append(node);
    index = next;
  }
  return fragment;
}
