/**
 * The seed report's published numbers (its Tables 4-9; docs/seed.md "Experiments"),
 * printed beside ours. They come from HiTS 2013 stamps we cannot reach, 20,000 maps per class,
 * MSE on the 24x24 padded maps as Keras reported it: a reference, not a target.
 */

export interface SeedMse {
  train: number;
  val: number;
}

export const SEED_PAPER = {
  source: 'EL4106 course report (Universidad de Chile, 2019), Tables 4-9; HiTS 2013, 20,000 maps per class',
  /** Table 4 (and 5, the same rows sorted). */
  exp1: [
    { variant: 'normal', data: 'mixed', train: 0.02284, val: 0.02288 },
    { variant: 'normal', data: 'sn', train: 0.01398, val: 0.01369 },
    { variant: 'normal', data: 'nonsn', train: 0.01921, val: 0.01981 },
    { variant: 'frozen', data: 'mixed', train: 0.01452, val: 0.01525 },
    { variant: 'frozen', data: 'sn', train: 0.01155, val: 0.0117 },
    { variant: 'frozen', data: 'nonsn', train: 0.01389, val: 0.01525 },
  ],
  /** Table 6: frozen encoder, mixed data, label injected in the bottleneck. */
  exp2: [
    { condition: 'numeral', train: 0.01038, val: 0.01204 },
    { condition: 'onehot', train: 0.00956, val: 0.01052 },
  ],
  /** Figure 11 gives only the uncut model's number; the report says every cut is worse. */
  exp3: { cut0Val: 0.01416, finding: 'error grows with every cut; the uncut model is best', lossAtEpoch9: { train: 0.3425, val: 0.346, loss: 'binary cross-entropy' } },
  /** Tables 7 and 8: the five trainings of each finalist. */
  exp4: {
    frozenSn: [
      { train: 0.01267, val: 0.01278 },
      { train: 0.01358, val: 0.01353 },
      { train: 0.01159, val: 0.01168 },
      { train: 0.01363, val: 0.01371 },
      { train: 0.01144, val: 0.01147 },
    ] as SeedMse[],
    onehotMixed: [
      { train: 0.00956, val: 0.01052 },
      { train: 0.00872, val: 0.00931 },
      { train: 0.00789, val: 0.00689 },
      { train: 0.00905, val: 0.00837 },
      { train: 0.00894, val: 0.00871 },
    ] as SeedMse[],
    /** Table 9 as printed (its means do not equal the means of Tables 7 and 8). */
    table9: {
      frozenSn: { mean: { train: 0.01299, val: 0.01309 }, std: { train: 0.00126, val: 0.00132 } },
      onehotMixed: { mean: { train: 0.00908, val: 0.00909 }, std: { train: 0.00075, val: 0.00131 } },
    },
  },
  parameters: { total: 294789, trainable: 192645, nonTrainable: 102144 },
  classifierTestAccuracy: 0.955,
} as const;
