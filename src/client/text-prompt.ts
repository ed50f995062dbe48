// A text prompt whose default is pre-filled and editable: what is on the line when Enter is pressed is the answer,
// so a default can be changed or cleared (inquirer's own `input` puts the default back when the line is empty).
import { createPrompt, isEnterKey, makeTheme, useEffect, useKeypress, usePrefix, useState, type Status } from '@inquirer/core';

export interface TextPromptConfig {
  message: string;
  /** Written into the line at start, for the user to keep, edit or delete. */
  prefill?: string;
  /** true, or the message to show under the line. */
  validate?: (value: string) => true | string;
}

export const textPrompt = createPrompt<string, TextPromptConfig>((config, done) => {
  const theme = makeTheme({ validationFailureMode: 'keep' });
  const [status, setStatus] = useState<Status>('idle');
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const prefix = usePrefix({ status, theme });

  useKeypress((key, rl) => {
    if (status !== 'idle') return;
    if (isEnterKey(key)) {
      const ok = config.validate ? config.validate(value) : true;
      if (ok === true) {
        setStatus('done');
        done(value);
      } else {
        rl.write(value); // Enter cleared readline's line; keep what was typed, to be corrected
        setError(ok);
      }
      return;
    }
    setValue(rl.line);
    setError(undefined);
  });

  useEffect((rl) => {
    if (config.prefill) {
      rl.write(config.prefill);
      setValue(config.prefill);
    }
  }, []);

  const message = theme.style.message(config.message, status);
  const shown = status === 'done' ? theme.style.answer(value) : value;
  return [[prefix, message, shown].filter((s) => s !== '').join(' '), error ? theme.style.error(error) : ''];
});
