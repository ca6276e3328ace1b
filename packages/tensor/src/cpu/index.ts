// CPU reference implementations of every kernel (plain TS, float64 math), used by tests.
export * from './elementwise';
export * from './matmul';
export * from './conv2d';
export * from './layout';
export * from './embedding';
export * from './norm';
export * from './attention';
