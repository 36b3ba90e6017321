// Drives MQTT.js against the broker for TestMQTTjs: one scenario per
// transport, each step printed as a JSON line that the Go test checks.
// Input (env): MQTTJS_MODULES, the node_modules holding mqtt; MQTTJS_CASE, a
// JSON object {url, ca, origin, thing, device, other, service, forged}.
const path = require("path");
const mqtt = require(path.join(process.env.MQTTJS_MODULES, "mqtt"));
const c = JSON.parse(process.env.MQTTJS_CASE);

const say = (step, fields) => console.log(JSON.stringify({ step, ...fields }));

function options(clientId, password) {
  return {
    protocolVersion: 5,
    clientId,
    username: "token",
    password,
    ca: c.ca,
    servername: "localhost",
    reconnectPeriod: 0,
    connectTimeout: 10000,
    wsOptions: { headers: { Origin: c.origin } },
  };
}

async function main() {
  const topic = `things/${c.thing}/telemetry`;
  const service = await mqtt.connectAsync(c.url, options("svc-mqttjs", c.service));
  const got = new Promise((resolve) => service.on("message", (t, payload, packet) => resolve({ t, payload: payload.toString(), qos: packet.qos })));
  const granted = await service.subscribeAsync("things/+/telemetry", { qos: 1 });
  say("subscribe", { reason: granted[0].qos });

  const device = await mqtt.connectAsync(c.url, options(c.thing, c.device));
  // A QoS 1 PUBLISH with a user property: the PUBACK must be a success that
  // echoes nothing (MQTT.js rejects the publish on an error reason).
  const puback = new Promise((resolve) => device.on("packetreceive", (p) => p.cmd === "puback" && resolve(p)));
  await device.publishAsync(topic, "21.5", { qos: 1, properties: { userProperties: { unit: "C" } } });
  const ack = await puback;
  say("puback", { reason: ack.reasonCode || 0, properties: ack.properties || null });
  const m = await Promise.race([got, new Promise((r) => setTimeout(() => r(null), 10000))]);
  say("message", m || { t: "" });

  try {
    const granted = await device.subscribeAsync(`things/${c.other}/commands/#`, { qos: 1 });
    say("subscribe-other", { reason: granted[0].qos });
  } catch (err) {
    say("subscribe-other", { reason: err.packet ? err.packet.granted[0] : String(err) });
  }
  await device.endAsync();
  await service.endAsync();

  try {
    const forged = await mqtt.connectAsync(c.url, options("forged-mqttjs", c.forged));
    await forged.endAsync();
    say("forged", { reason: 0 });
  } catch (err) {
    say("forged", { reason: err.code });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    say("error", { message: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  },
);
