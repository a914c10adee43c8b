// Reading OpenAI-style server-sent events from a fetch() response.

// The parsed JSON of every `data:` event until `data: [DONE]`; comments (": keep-alive") skipped.
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

// The message of an OpenAI error body, with the HTTP status and code; a fallback otherwise.
export async function errorMessage(response) {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text);
    const code = error.code ? ` (${error.code})` : "";
    return `${response.status}${code}: ${error.message}`;
  } catch {
    return `${response.status} ${response.statusText}: ${text.slice(0, 300)}`;
  }
}
