// The official OpenAI Node client (npm `openai`, pinned by package-lock.json) against kiln's
// OpenAI-compatible speech endpoint. Usage: node openai-speech.js URL API_KEY OUT_DIR
const fs = require('fs');
const path = require('path');
const OpenAI = require('openai');

async function main() {
  const [url, key, out] = process.argv.slice(2);
  const client = new OpenAI({ apiKey: key, baseURL: url + '/v1', maxRetries: 0 });
  const fail = (msg) => { console.error('FAIL: ' + msg); process.exit(1); };

  // wav, as a client that wants raw audio asks for it.
  const wav = Buffer.from(await (await client.audio.speech.create({
    model: 'tts-1', voice: 'alloy', input: 'First crack at nine minutes twelve.',
    response_format: 'wav' })).arrayBuffer());
  if (wav.toString('ascii', 0, 4) !== 'RIFF' || wav.toString('ascii', 8, 12) !== 'WAVE')
    fail('response_format wav did not return a RIFF/WAVE file');
  if (wav.length < 16000) fail(`wav too short: ${wav.length} bytes`);
  fs.writeFileSync(path.join(out, 'openai.wav'), wav);

  // The client's default format is mp3: an MPEG frame sync or an ID3 tag.
  const mp3 = Buffer.from(await (await client.audio.speech.create({
    model: 'tts-1', voice: 'nova', input: 'Drop at eleven minutes.' })).arrayBuffer());
  const sync = mp3[0] === 0xff && (mp3[1] & 0xe0) === 0xe0;
  if (!(sync || mp3.toString('ascii', 0, 3) === 'ID3')) fail('default format is not mp3');

  // speed and pcm.
  const pcm = Buffer.from(await (await client.audio.speech.create({
    model: 'tts-1', voice: 'alloy', input: 'Drop at eleven minutes.', response_format: 'pcm',
    speed: 2.0 })).arrayBuffer());
  if (pcm.length < 2000 || pcm.length % 2 !== 0) fail(`pcm has ${pcm.length} bytes`);

  // Errors come back as the client's APIError with the server's status and message.
  try {
    await client.audio.speech.create({ model: 'tts-1', voice: 'no-such-voice', input: 'Hello.' });
    fail('an unknown voice was accepted');
  } catch (e) {
    if (!(e instanceof OpenAI.APIError) || e.status !== 404) fail(`unknown voice: ${e}`);
    if (!String(e.message).includes('kiln-slt-small')) fail(`404 does not list voices: ${e.message}`);
  }
  console.log(`openai client: wav ${wav.length} B, mp3 ${mp3.length} B, pcm ${pcm.length} B, 404 ok`);
}

main().catch((e) => { console.error('FAIL: ' + e); process.exit(1); });
