// The base of the panels that show the open run: they read the run and the scrubber's
// position from the explorer that owns them.

export class RunView {
  constructor(explorer) {
    this.explorer = explorer;
  }

  get run() {
    return this.explorer.run;
  }

  get scrubber() {
    return this.explorer.scrubber;
  }
}
