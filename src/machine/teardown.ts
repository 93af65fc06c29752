// Host resources to release, last acquired first: the builder adds each as it acquires it, so a failed build releases
// exactly what it got, and the finished machine releases the same list.

export class Teardown {
  private readonly steps: (() => void)[] = [];

  add(release: () => void): void {
    this.steps.push(release);
  }

  /** Releases everything, newest first, once. A failing step does not keep the others from running. */
  run(): void {
    for (const release of this.steps.splice(0).reverse()) {
      try {
        release();
      } catch {
        /* the rest still has to go; the error that ended the machine matters more */
      }
    }
  }
}
