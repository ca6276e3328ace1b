// CPU reference implementations of every kernel (plain TS, float64 math), used by tests.
export * from './elementwise';
