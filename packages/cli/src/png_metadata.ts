// Moved to @fewstep/models (image/png_metadata.ts), shared with the web page; kept so existing imports resolve.
export { parametersText, pngTextChunks, type GenerationInfo } from '@fewstep/models';
