/**
 * Channel names (PROTOCOL.md §9.1): 1 to 128 bytes of
 * `A-Z a-z 0-9 - _ . : @ /`. Validated before anything is sent: in
 * version 1 an invalid name closes the whole connection (§17.1).
 */

/** Longest channel name, in bytes. */
export const MAX_CHANNEL_LEN = 128;

/** Why a channel name is invalid. */
export type ChannelProblem = 'empty' | 'too_long' | 'forbidden_byte';

/** Whether byte `b` may appear in a channel name. */
export function isChannelByte(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) || // 0-9
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    b === 0x2d || // -
    b === 0x5f || // _
    b === 0x2e || // .
    b === 0x3a || // :
    b === 0x40 || // @
    b === 0x2f // /
  );
}

/** The problem with raw name bytes, or `null` when they form a valid name. */
export function channelBytesProblem(raw: Uint8Array, maxLen = MAX_CHANNEL_LEN): ChannelProblem | null {
  if (raw.length === 0) return 'empty';
  if (raw.length > maxLen) return 'too_long';
  for (let i = 0; i < raw.length; i++) {
    if (!isChannelByte(raw[i]!)) return 'forbidden_byte';
  }
  return null;
}

/**
 * The problem with a name given as a string, or `null` when valid. Every
 * allowed character is ASCII, so characters and bytes coincide.
 */
export function channelProblem(name: string, maxLen = MAX_CHANNEL_LEN): ChannelProblem | null {
  if (name.length === 0) return 'empty';
  if (name.length > maxLen) return 'too_long';
  for (let i = 0; i < name.length; i++) {
    if (!isChannelByte(name.charCodeAt(i))) return 'forbidden_byte';
  }
  return null;
}

/** Whether `name` is a valid channel name. */
export function isValidChannel(name: string): boolean {
  return channelProblem(name) === null;
}
