// GET /admin/events: the dashboard's live feed, an SSE stream with one `snapshot` event per interval (the first at
// once). The caller has already checked the admin token. The page reads it with fetch (EventSource cannot send an
// Authorization header), so no cookie ever authenticates anything.
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface Snapshot {
  /** The chart's samples: sent on the first snapshot and again only when historyAt (the newest sample) moved. */
  history?: unknown[];
  historyAt?: number;
  [key: string]: unknown;
}

export function streamSnapshots(req: IncomingMessage, res: ServerResponse, snapshot: () => Promise<Snapshot>, intervalMs = 1000): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    // Proxies that buffer responses (nginx) would hold the stream back.
    'x-accel-buffering': 'no',
  });
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let sentHistoryAt: number | undefined = NaN; // matches nothing: the first snapshot carries the history
  const stop = () => {
    closed = true;
    clearTimeout(timer);
  };
  req.on('close', stop);
  res.on('close', stop);
  const tick = async () => {
    if (closed) return;
    // A reader that stopped reading gets no new snapshots piling up; it catches up with the next one.
    if (!res.writableNeedDrain) {
      try {
        const snap = await snapshot();
        if (closed) return;
        if (snap.historyAt === sentHistoryAt) delete snap.history;
        else sentHistoryAt = snap.historyAt;
        res.write(`event: snapshot\ndata: ${JSON.stringify(snap)}\n\n`);
      } catch (e) {
        if (!closed) res.write(`event: error\ndata: ${JSON.stringify({ message: (e as Error).message })}\n\n`);
      }
    }
    if (!closed) timer = setTimeout(() => void tick(), intervalMs);
  };
  void tick();
}
