// Sampling: showing a request to a person, and forwarding it to an OpenAI-compatible chat-completions endpoint.
import type { CreateMessageRequest, CreateMessageResult } from '@modelcontextprotocol/sdk/types.js';

type SamplingParams = CreateMessageRequest['params'];
type Part = { type: string; text?: string; mimeType?: string; data?: string };

export interface ChatEndpoint {
  /** A base URL (…/v1) or the full …/chat/completions URL. */
  url: string;
  model: string;
  apiKey?: string;
}

function parts(content: unknown): Part[] {
  return (Array.isArray(content) ? content : [content]) as Part[];
}

/** The request as a person reads it. */
export function describeSampling(p: SamplingParams): string {
  const lines: string[] = [];
  if (p.systemPrompt) lines.push(`system: ${p.systemPrompt}`);
  for (const m of p.messages) {
    for (const c of parts(m.content))
      lines.push(`${m.role}: ${c.type === 'text' ? c.text : `[${c.type}${c.mimeType ? ` ${c.mimeType}` : ''}]`}`);
  }
  const hints = p.modelPreferences?.hints?.map((h) => h.name).filter(Boolean);
  lines.push(
    `(max ${p.maxTokens} tokens${p.temperature !== undefined ? `, temperature ${p.temperature}` : ''}${hints?.length ? `, model hints: ${hints.join(', ')}` : ''})`,
  );
  return lines.join('\n');
}

export function chatUrl(url: string): string {
  return /\/chat\/completions\/?$/.test(url) ? url : `${url.replace(/\/+$/, '')}/chat/completions`;
}

/** MCP sampling params -> a chat-completions request body. */
export function toChatRequest(p: SamplingParams, model: string): Record<string, unknown> {
  const messages: Array<{ role: string; content: unknown }> = [];
  if (p.systemPrompt) messages.push({ role: 'system', content: p.systemPrompt });
  for (const m of p.messages) {
    const ps = parts(m.content);
    if (ps.every((c) => c.type === 'text')) messages.push({ role: m.role, content: ps.map((c) => c.text).join('\n') });
    else
      messages.push({
        role: m.role,
        content: ps.map((c) =>
          c.type === 'image'
            ? { type: 'image_url', image_url: { url: `data:${c.mimeType};base64,${c.data}` } }
            : { type: 'text', text: c.text ?? `[${c.type}]` },
        ),
      });
  }
  const body: Record<string, unknown> = { model, messages, max_tokens: p.maxTokens };
  if (p.temperature !== undefined) body.temperature = p.temperature;
  if (p.stopSequences?.length) body.stop = p.stopSequences;
  return body;
}

const STOP: Record<string, string> = { stop: 'endTurn', length: 'maxTokens', content_filter: 'contentFilter', tool_calls: 'toolUse' };

export async function forwardSampling(p: SamplingParams, ep: ChatEndpoint, signal?: AbortSignal): Promise<CreateMessageResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (ep.apiKey) headers.authorization = `Bearer ${ep.apiKey}`;
  const r = await fetch(chatUrl(ep.url), { method: 'POST', headers, body: JSON.stringify(toChatRequest(p, ep.model)), signal });
  const text = await r.text();
  if (!r.ok) throw new Error(`sampling endpoint answered HTTP ${r.status}: ${text.slice(0, 300)}`);
  const j = JSON.parse(text) as { model?: string; choices?: Array<{ message?: { content?: string | null }; finish_reason?: string }> };
  const choice = j.choices?.[0];
  if (typeof choice?.message?.content !== 'string') throw new Error(`sampling endpoint gave no message: ${text.slice(0, 300)}`);
  const reason = choice.finish_reason ?? 'stop';
  return {
    role: 'assistant',
    content: { type: 'text', text: choice.message.content },
    model: j.model ?? ep.model,
    stopReason: STOP[reason] ?? reason,
  };
}

/** A typed reply as a sampling result. */
export function typedReply(text: string, model = 'human'): CreateMessageResult {
  return { role: 'assistant', content: { type: 'text', text }, model, stopReason: 'endTurn' };
}
