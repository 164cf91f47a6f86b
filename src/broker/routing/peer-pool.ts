/**
 * Sessions from this kas to other kas replicas (their private API), one per replica, opened on
 * first use and reused: many routed requests share one connection as streams, exactly like agent
 * sessions. Each connection is authenticated with a short-lived kas-to-kas JWT.
 */
import { Session } from '../../protocol/session.js';
import type { Logger } from '../../shared/logger.js';
import { dialTunnelWebSocket } from '../../shared/tunnel-websocket.js';
import { signKasToKas } from '../gitlab/jwt.js';
import type { TunnelConfig } from '../tunnel/config.js';
import { sessionOptionsFrom } from '../tunnel/session-options.js';

export class PeerPool {
  private readonly sessions = new Map<string, Promise<Session>>();
  private closed = false;

  constructor(
    private readonly secret: Buffer,
    private readonly tunnel: TunnelConfig,
    private readonly instanceName: string,
    private readonly logger: Logger,
  ) {}

  /** An open session to the replica at `url` (ws://host:port), connecting if needed. */
  get(url: string): Promise<Session> {
    if (this.closed) return Promise.reject(new Error('kas is stopping'));
    const existing = this.sessions.get(url);
    if (existing) return existing;
    const p = this.connect(url);
    this.sessions.set(url, p);
    p.then(
      (s) => s.once('close', () => this.sessions.get(url) === p && this.sessions.delete(url)),
      () => this.sessions.delete(url),
    );
    return p;
  }

  private async connect(url: string): Promise<Session> {
    const token = await signKasToKas(this.secret, 30);
    const options = sessionOptionsFrom(this.tunnel);
    const { transport } = await dialTunnelWebSocket(url, {
      ...options,
      headers: { Authorization: `Bearer ${token}` },
      handshakeTimeoutMs: 5000,
      refused: (status) => new Error(`replica ${url} refused the connection: ${status}`),
    });
    const session = new Session(transport, { role: 'client', ...options, hello: { kasInstance: this.instanceName } });
    await session.ready;
    this.logger.debug({ peer: url }, 'connected to a kas replica');
    return session;
  }

  async stop(): Promise<void> {
    this.closed = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((p) => p.then((s) => s.drain('kas is stopping', 1000), () => undefined)));
  }
}
