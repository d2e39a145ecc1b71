// A Node.js custom runtime for the chroot tests, on raw sockets so that every byte is ours.
//
// Loops GET /next -> POST /response at $AWS_LAMBDA_RUNTIME_API. The event (JSON) says what to
// send back:
//   {"mode": "whoami"}                  {"runtimeApi": <the address this runtime was given>}
//   {"mode": "buffered", "b64": "..."}  exactly those bytes, Content-Length framed
//   {"mode": "stream", "chunks": [...], "gate": PORT, "error": {"type", "message"}}
//       a streamed response (Lambda-Runtime-Function-Response-Mode: streaming, chunked), one
//       chunk per write; after the first chunk it connects to 127.0.0.1:PORT and waits for one
//       byte before writing the rest; then the error trailers when "error" is given.
import net from "node:net";

const [host, port] = (() => {
  const value = process.env.AWS_LAMBDA_RUNTIME_API;
  const at = value.lastIndexOf(":");
  return [value.slice(0, at), Number(value.slice(at + 1))];
})();

function connect() {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port }, () => resolve(sock));
    sock.setNoDelay(true);
    sock.once("error", reject);
  });
}

// Reads one HTTP response (Content-Length or chunked; trailers skipped) from a socket.
class Reader {
  constructor(sock) {
    this.buf = Buffer.alloc(0);
    this.waiters = [];
    sock.on("data", (data) => {
      this.buf = Buffer.concat([this.buf, data]);
      this.waiters.splice(0).forEach((wake) => wake());
    });
  }
  async until(marker) {
    for (;;) {
      const at = this.buf.indexOf(marker);
      if (at >= 0) {
        const out = this.buf.subarray(0, at);
        this.buf = this.buf.subarray(at + marker.length);
        return out;
      }
      await new Promise((wake) => this.waiters.push(wake));
    }
  }
  async exactly(size) {
    while (this.buf.length < size) await new Promise((wake) => this.waiters.push(wake));
    const out = this.buf.subarray(0, size);
    this.buf = this.buf.subarray(size);
    return out;
  }
  async response() {
    const head = (await this.until("\r\n\r\n")).toString("latin1").split("\r\n");
    const status = Number(head[0].split(" ")[1]);
    const headers = {};
    for (const line of head.slice(1)) {
      const at = line.indexOf(":");
      headers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
    }
    if ((headers["transfer-encoding"] || "").toLowerCase() === "chunked") {
      const parts = [];
      for (;;) {
        const size = parseInt((await this.until("\r\n")).toString().split(";")[0], 16);
        if (size === 0) {
          while ((await this.until("\r\n")).length) {}
          break;
        }
        parts.push(await this.exactly(size));
        await this.exactly(2);
      }
      return { status, headers, body: Buffer.concat(parts) };
    }
    return { status, headers, body: await this.exactly(Number(headers["content-length"] || 0)) };
  }
}

function chunk(data) {
  const bytes = Buffer.from(data);
  return Buffer.concat([Buffer.from(bytes.length.toString(16) + "\r\n"), bytes, Buffer.from("\r\n")]);
}

function waitForGate(gatePort) {
  return new Promise((resolve, reject) => {
    const gate = net.connect({ host: "127.0.0.1", port: gatePort });
    gate.once("data", () => {
      gate.destroy();
      resolve();
    });
    gate.once("error", reject);
  });
}

async function respond(requestId, event) {
  const sock = await connect();
  const reader = new Reader(sock);
  const path = `/2018-06-01/runtime/invocation/${requestId}/response`;
  if (event.mode === "stream") {
    sock.write(
      `POST ${path} HTTP/1.1\r\nHost: runtime\r\n` +
        "Lambda-Runtime-Function-Response-Mode: streaming\r\n" +
        "Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n" +
        "Trailer: Lambda-Runtime-Function-Error-Type\r\n" +
        "Trailer: Lambda-Runtime-Function-Error-Body\r\n\r\n",
    );
    for (const [index, piece] of event.chunks.entries()) {
      if (index === 1 && event.gate) await waitForGate(event.gate);
      sock.write(chunk(piece));
    }
    let trailers = "";
    if (event.error) {
      const detail = JSON.stringify({ errorType: event.error.type, errorMessage: event.error.message });
      trailers =
        `Lambda-Runtime-Function-Error-Type: ${event.error.type}\r\n` +
        `Lambda-Runtime-Function-Error-Body: ${Buffer.from(detail).toString("base64")}\r\n`;
    }
    sock.write("0\r\n" + trailers + "\r\n");
  } else {
    const body =
      event.mode === "buffered"
        ? Buffer.from(event.b64, "base64")
        : Buffer.from(JSON.stringify({ runtimeApi: process.env.AWS_LAMBDA_RUNTIME_API }));
    sock.write(
      `POST ${path} HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/octet-stream\r\n` +
        `Content-Length: ${body.length}\r\n\r\n`,
    );
    sock.write(body);
  }
  const answer = await reader.response();
  if (answer.status !== 202) console.error(`runtime.mjs: /response answered ${answer.status}`);
  sock.destroy();
}

const sock = await connect();
const reader = new Reader(sock);
for (;;) {
  sock.write("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: runtime\r\n\r\n");
  const next = await reader.response();
  if (next.status !== 200) throw new Error(`/next answered ${next.status}`);
  await respond(next.headers["lambda-runtime-aws-request-id"], JSON.parse(next.body.toString()));
}
