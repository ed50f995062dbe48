// A request as the front door hands it to a runtime endpoint: what the wire layer read, and who sent it.
import type { Principal } from '../security/auth.js';
import type { Post2025, Request2026 } from '../wire/inbound.js';

/** A 2025 client's POST, with who sent it. */
export interface Post2025Call extends Post2025 {
  principal: Principal;
}

/** A 2026 client's request, with who sent it and the runtime session it names (if any). */
export interface Request2026Call extends Request2026 {
  principal: Principal;
  runtimeSession?: string;
}
