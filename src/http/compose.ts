// Steps of a request pipeline, run in order: each does its part and calls next() to go on, or answers and returns.
// (The shape of Hono's and Koa's compose, kept to the few lines berth needs.)
export type Step<T> = (t: T, next: () => Promise<void>) => Promise<void>;

export function compose<T>(...steps: Step<T>[]): (t: T) => Promise<void> {
  return (t) => {
    const run = (i: number): Promise<void> => (i < steps.length ? steps[i]!(t, () => run(i + 1)) : Promise.resolve());
    return run(0);
  };
}
